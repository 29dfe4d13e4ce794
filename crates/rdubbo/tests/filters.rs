//! Filters over the wire: a user filter on each side (attachments cross as HTTP headers)
//! and the built-in `executes` limit answered with a retryable "busy" error.

use std::sync::Arc;
use std::time::Duration;

use rdubbo::cluster::Filter;
use rdubbo::consumer::Reference;
use rdubbo::error::codes;
use rdubbo::provider::Provider;
use rdubbo::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo};

struct Slow;

impl Invoker for Slow {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            let ms = inv.args.first().and_then(|v| v.as_u64()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Reply::typed(
                inv.attachments
                    .get("seen-by")
                    .unwrap_or("nobody")
                    .to_owned(),
            ))
        })
    }
}

struct Stamp;

impl Filter for Stamp {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        mut inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        inv.attachments.insert("seen-by", "consumer-filter");
        next.invoke(inv)
    }
}

struct Require;

impl Filter for Require {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        if inv.attachments.get("seen-by").is_some() {
            next.invoke(inv)
        } else {
            Box::pin(async { Err(RpcError::service("refused by the provider filter")) })
        }
    }
}

fn info() -> ServiceInfo {
    ServiceInfo {
        interface: "demo.Filtered".into(),
        version: None,
        group: None,
        methods: vec!["slow".into()],
        ..Default::default()
    }
}

fn call(ms: u64) -> Invocation {
    Invocation::new("demo.Filtered", "slow", vec![rdubbo::Value::from(ms)])
        .with_timeout(Some(Duration::from_secs(3)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_filters_on_both_sides_and_executes_limit() {
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .filter(Arc::new(Require))
        .param("executes", "2")
        .export(info(), Arc::new(Slow))
        .start()
        .await
        .unwrap();
    let url = provider.urls()[0].clone();
    assert_eq!(url.param("executes"), Some("2"));

    let plain = Reference::builder("demo.Filtered")
        .url(url.clone())
        .retries(0)
        .build()
        .await
        .unwrap();
    let err = plain.invoke(call(0)).await.unwrap_err();
    assert_eq!(err.message(), "refused by the provider filter");

    let stamped = Arc::new(
        Reference::builder("demo.Filtered")
            .url(url)
            .retries(0)
            .filter(Arc::new(Stamp))
            .build()
            .await
            .unwrap(),
    );
    assert_eq!(stamped.invoke(call(0)).await.unwrap(), "consumer-filter");

    // Three concurrent calls against executes=2: one is refused with "busy".
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let r = stamped.clone();
            tokio::spawn(async move { r.invoke(call(300)).await })
        })
        .collect();
    let mut busy = 0;
    for c in calls {
        if let Err(e) = c.await.unwrap() {
            assert_eq!(e.code(), codes::SERVER_BUSY, "{e}");
            busy += 1;
        }
    }
    assert_eq!(busy, 1);
    provider.stop().await;
}

#[rdubbo::service(interface = "demo.Context", version = "1.0.0")]
pub trait ContextService {
    /// Answers the `tenant` attachment and whether a deadline was known.
    async fn whoami(&self) -> RpcResult<(Option<String>, bool)>;
}

struct Ctx;

impl ContextService for Ctx {
    async fn whoami(&self) -> RpcResult<(Option<String>, bool)> {
        let call = rdubbo::context::current().expect("served calls have a context");
        Ok((
            call.attachments.get("tenant").map(str::to_owned),
            call.remaining()
                .is_some_and(|r| r <= Duration::from_secs(2)),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_code_reads_attachments_and_its_deadline() {
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .export(
            ContextServiceServer::<Ctx>::info(),
            Arc::new(ContextServiceServer::new(Ctx)),
        )
        .start()
        .await
        .unwrap();
    let reference = Reference::builder("demo.Context")
        .version("1.0.0")
        .url(provider.urls()[0].clone())
        .build()
        .await
        .unwrap();
    let client =
        ContextServiceClient::new(Arc::new(reference)).with_timeout(Duration::from_secs(2));
    assert_eq!(client.whoami().await.unwrap(), (None, true));
    let mut extra = rdubbo::Attachments::new();
    extra.insert("tenant", "acme");
    let answer = rdubbo::context::with_attachments(extra, client.whoami()).await;
    assert_eq!(answer.unwrap(), (Some("acme".to_owned()), true));
    assert!(rdubbo::context::current().is_none());
    provider.stop().await;
}
