#[rdubbo::service]
pub trait Accounts {
    async fn balance(&self, #[rdubbo(class = "java.lang.Long")] id: i64) -> rdubbo::RpcResult<i64>;
}

fn main() {}
