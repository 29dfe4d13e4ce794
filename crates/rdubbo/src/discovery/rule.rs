//! Migration steps and Java's migration rule (`<application>.migration` in the config
//! center, group `DUBBO_SERVICEDISCOVERY_MIGRATION`).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// How a reference finds its providers while services move from interface-level to
/// application-level registration (Java's `MigrationStep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MigrationStep {
    /// Interface-level URLs only (Dubbo 2's model).
    ForceInterface,
    /// Application-level providers when there are (enough of) them, else interface-level
    /// ones (Java 3's default).
    #[default]
    ApplicationFirst,
    /// Application-level providers only.
    ForceApplication,
}

impl MigrationStep {
    /// `FORCE_INTERFACE`, `APPLICATION_FIRST` or `FORCE_APPLICATION`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStep::ForceInterface => "FORCE_INTERFACE",
            MigrationStep::ApplicationFirst => "APPLICATION_FIRST",
            MigrationStep::ForceApplication => "FORCE_APPLICATION",
        }
    }

    /// Whether application-level discovery runs in this step.
    pub fn uses_application(self) -> bool {
        self != MigrationStep::ForceInterface
    }
}

impl fmt::Display for MigrationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MigrationStep {
    type Err = String;

    /// Java's names, case-insensitive, `-` taken for `_`.
    fn from_str(s: &str) -> Result<MigrationStep, String> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "FORCE_INTERFACE" => Ok(MigrationStep::ForceInterface),
            "APPLICATION_FIRST" => Ok(MigrationStep::ApplicationFirst),
            "FORCE_APPLICATION" => Ok(MigrationStep::ForceApplication),
            _ => Err(format!(
                "unknown migration step `{s}` (expected FORCE_INTERFACE, APPLICATION_FIRST or FORCE_APPLICATION)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for MigrationStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The step settings of a rule, of one of its `interfaces` entries or of one of its
/// `applications` entries.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSettings {
    /// The step.
    #[serde(default)]
    pub step: Option<MigrationStep>,
    /// APPLICATION_FIRST: use application-level providers when there are at least
    /// `threshold` × as many as interface-level ones (Java's default 0: any).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Switch even when the target has no provider (Java's `force`).
    #[serde(default)]
    pub force: Option<bool>,
    /// APPLICATION_FIRST: the percentage of calls that go to the side chosen (the
    /// application level when it wins); the others go to interface-level providers
    /// (Java's `proportion`, the reference's `migration.promotion`; default 100: every
    /// call).
    #[serde(default)]
    pub proportion: Option<u32>,
    /// Seconds a running reference keeps calling its current side after its step changes
    /// to FORCE_INTERFACE or FORCE_APPLICATION, while it follows the new side, before it
    /// switches (Java's `delay`, the reference's `migration.delay`; default 0).
    #[serde(default)]
    pub delay: Option<u32>,
}

/// An `interfaces` entry of a rule: settings of one service.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStep {
    /// `interface[:version]` (Java's display service key), `group/interface[:version]`
    /// or the bare interface.
    pub service_key: String,
    /// Its settings.
    #[serde(flatten)]
    pub settings: StepSettings,
}

/// An `applications` entry of a rule: settings of the services of one provider
/// application.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStep {
    /// The provider application.
    pub service_key: String,
    /// Its settings.
    #[serde(flatten)]
    pub settings: StepSettings,
}

/// Java's `MigrationRule`: the YAML document `<consumer-app>.migration`.
///
/// ```yaml
/// key: demo-consumer
/// step: APPLICATION_FIRST
/// threshold: 1.0
/// interfaces:
///   - serviceKey: org.apache.dubbo.demo.DemoService:1.0.0
///     step: FORCE_APPLICATION
/// applications:
///   - serviceKey: demo-provider
///     step: FORCE_INTERFACE
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRule {
    /// The consumer application the rule is for.
    #[serde(default)]
    pub key: Option<String>,
    /// Settings of every service of the consumer.
    #[serde(flatten)]
    pub settings: StepSettings,
    /// Settings by service (win over the rest).
    #[serde(default)]
    pub interfaces: Vec<ServiceStep>,
    /// Settings by provider application (win over the rule's own).
    #[serde(default)]
    pub applications: Vec<ApplicationStep>,
}

/// What a reference does now: its step, threshold and force flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The step.
    pub step: MigrationStep,
    /// See [`StepSettings::threshold`].
    pub threshold: f64,
    /// See [`StepSettings::force`].
    pub force: bool,
}

impl MigrationRule {
    /// Parses the YAML text of a rule.
    pub fn parse(text: &str) -> Result<MigrationRule, String> {
        serde_yaml_ng::from_str(text).map_err(|e| format!("invalid migration rule: {e}"))
    }

    /// The settings for one reference (`interface`, `version`, `group`) whose providers
    /// come from `apps`, over `default` (the configured step): an `interfaces` entry
    /// first, then an `applications` entry, then the rule's own, then `default`.
    pub fn decide(
        &self,
        interface: &str,
        version: Option<&str>,
        group: Option<&str>,
        apps: &[String],
        default: Decision,
    ) -> Decision {
        let settings = self.settings(interface, version, group, apps);
        Decision {
            step: settings.step.unwrap_or(default.step),
            threshold: settings.threshold.unwrap_or(default.threshold),
            force: settings.force.unwrap_or(default.force),
        }
    }

    /// The settings for one reference (`interface`, `version`, `group`) whose providers
    /// come from `apps`: each one from an `interfaces` entry first, then an
    /// `applications` entry, then the rule's own (`None` where none sets it).
    pub fn settings(
        &self,
        interface: &str,
        version: Option<&str>,
        group: Option<&str>,
        apps: &[String],
    ) -> StepSettings {
        let display = match version {
            Some(v) => format!("{interface}:{v}"),
            None => interface.to_owned(),
        };
        let full = match group {
            Some(g) => format!("{g}/{display}"),
            None => display.clone(),
        };
        let mut layers: Vec<&StepSettings> = Vec::new();
        if let Some(s) = self
            .interfaces
            .iter()
            .find(|s| s.service_key == full || s.service_key == display)
            .or_else(|| self.interfaces.iter().find(|s| s.service_key == interface))
        {
            layers.push(&s.settings);
        }
        if let Some(s) = self
            .applications
            .iter()
            .find(|a| apps.contains(&a.service_key))
        {
            layers.push(&s.settings);
        }
        layers.push(&self.settings);
        StepSettings {
            step: layers.iter().find_map(|s| s.step),
            threshold: layers.iter().find_map(|s| s.threshold),
            force: layers.iter().find_map(|s| s.force),
            proportion: layers.iter().find_map(|s| s.proportion),
            delay: layers.iter().find_map(|s| s.delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_as_java_names() {
        assert_eq!(
            "FORCE_APPLICATION".parse::<MigrationStep>(),
            Ok(MigrationStep::ForceApplication)
        );
        assert_eq!(
            "application-first".parse::<MigrationStep>(),
            Ok(MigrationStep::ApplicationFirst)
        );
        assert!("SOMETIMES".parse::<MigrationStep>().is_err());
        assert_eq!(MigrationStep::default(), MigrationStep::ApplicationFirst);
    }

    #[test]
    fn javas_rule_example_decides_per_service_and_application() {
        let rule = MigrationRule::parse(
            "key: demo-consumer\nstep: APPLICATION_FIRST\nthreshold: 1.0\nproportion: 60\ndelay: 60\nforce: false\n\
             interfaces:\n  - serviceKey: DemoService:1.0.0\n    step: FORCE_APPLICATION\n\
             applications:\n  - serviceKey: TestApplication\n    step: FORCE_INTERFACE\n",
        )
        .unwrap();
        assert_eq!(rule.key.as_deref(), Some("demo-consumer"));
        let default = Decision {
            step: MigrationStep::ForceInterface,
            threshold: 0.0,
            force: false,
        };
        let d = rule.decide("DemoService", Some("1.0.0"), None, &[], default);
        assert_eq!(d.step, MigrationStep::ForceApplication);
        assert_eq!(d.threshold, 1.0);
        let d = rule.decide("Other", None, None, &["TestApplication".into()], default);
        assert_eq!(d.step, MigrationStep::ForceInterface);
        let d = rule.decide("Other", None, None, &[], default);
        assert_eq!(d.step, MigrationStep::ApplicationFirst);
        let s = rule.settings("Other", None, None, &[]);
        assert_eq!((s.proportion, s.delay), (Some(60), Some(60)));
        // An empty rule keeps the configured step.
        let empty = MigrationRule::parse("key: x\n").unwrap();
        assert_eq!(empty.decide("a", None, None, &[], default), default);
        assert!(MigrationRule::parse("step: SOMETIMES").is_err());
    }
}
