#[rdubbo::service]
pub trait Counter {
    async fn add(&mut self, n: i32) -> rdubbo::RpcResult<i32>;
}

fn main() {}
