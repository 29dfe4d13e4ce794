#[rdubbo::service]
pub trait Greeter {
    fn say_hello(&self, name: String) -> rdubbo::RpcResult<String>;
}

fn main() {}
