#[rdubbo::service(interface = "org.example.Greeter", timeout = "5s")]
pub trait Greeter {
    async fn say_hello(&self, name: String) -> rdubbo::RpcResult<String>;
}

fn main() {}
