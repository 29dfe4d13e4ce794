#[rdubbo::service]
pub trait Greeter {
    async fn say_hello(name: String) -> rdubbo::RpcResult<String>;
}

fn main() {}
