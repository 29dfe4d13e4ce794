#[rdubbo::service]
pub trait Greeter {
    #[rdubbo(wire = "hello")]
    async fn say_hello(&self, name: String) -> rdubbo::RpcResult<String>;
}

fn main() {}
