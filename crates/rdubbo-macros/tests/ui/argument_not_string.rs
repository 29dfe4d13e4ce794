#[rdubbo::service(interface = "org.example.Greeter", version = 1)]
pub trait Greeter {
    async fn say_hello(&self, name: String) -> rdubbo::RpcResult<String>;
}

fn main() {}
