#[rdubbo::service]
pub trait Greeter {
    const GREETING: &'static str;

    async fn say_hello(&self, name: String) -> rdubbo::RpcResult<String>;
}

fn main() {}
