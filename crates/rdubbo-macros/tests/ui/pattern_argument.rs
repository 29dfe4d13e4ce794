#[rdubbo::service]
pub trait Calculator {
    async fn add(&self, (a, b): (i32, i32)) -> rdubbo::RpcResult<i32>;
}

fn main() {}
