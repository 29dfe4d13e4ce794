//! Dubbo `token` auth set in an application's configuration file: the provider registers
//! the token and refuses calls without it (Java's TokenFilter); a consumer that found the
//! provider through the registry sends it, a direct caller without it is refused.

use std::sync::Arc;
use std::time::Duration;

use rdubbo::app::{Application, Config, Format};
use rdubbo::consumer::Reference;

mod app_common;
use app_common::*;

async fn provider(registry: &str, token: &str) -> Application {
    let text = provider_toml(registry, "token-app").replace(
        "[provider.services.demo.methods.sayHello]",
        &format!("params = {{ token = \"{token}\" }}\n[provider.services.demo.methods.sayHello]"),
    );
    let config = Config::from_str(&text, Format::Toml, "provider.toml").unwrap();
    Application::builder(config)
        .service(
            "demo",
            DemoServiceServer::<Demo>::info(),
            Arc::new(DemoServiceServer::new(Demo("token-app"))),
        )
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_config_file_is_registered_and_checked() {
    let server = registry().await;
    for (configured, fixed) in [("s3cret", true), ("true", false)] {
        let app = provider(&server.registry_url(), configured).await;
        let url = app
            .exported_urls()
            .into_iter()
            .find(|u| u.protocol() == "dubbo")
            .expect("a dubbo URL");
        let token = url.param("token").expect("token registered").to_owned();
        if fixed {
            assert_eq!(token, "s3cret");
        } else {
            // `true`: a random token (a UUID, as Java), not the word itself.
            assert_eq!(token.len(), 36, "{token}");
        }

        // Through the registry: the consumer learns the token with the URL.
        let reg = rdubbo::registry::connect(&server.registry_url())
            .await
            .unwrap();
        let through = Reference::builder("org.apache.dubbo.demo.DemoService")
            .version("1.0.0")
            .registry(reg)
            .build()
            .await
            .unwrap();
        let client = DemoServiceClient::new(Arc::new(through));
        // Both URLs (dubbo and jsonrpc) are in the list: enough calls reach the dubbo one.
        for _ in 0..10 {
            assert_eq!(
                client.say_hello("ann".into()).await.unwrap(),
                "Hello ann, from token-app"
            );
        }

        // Directly, without the token: refused with Java's text.
        let mut direct_url = url.clone();
        direct_url.remove_param("token");
        let direct = Reference::builder("org.apache.dubbo.demo.DemoService")
            .version("1.0.0")
            .url(direct_url)
            .retries(0)
            .build()
            .await
            .unwrap();
        let err = DemoServiceClient::new(Arc::new(direct))
            .say_hello("eve".into())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Invalid token!"), "{err}");
        tokio::time::timeout(Duration::from_secs(20), app.shutdown())
            .await
            .unwrap();
    }
}
