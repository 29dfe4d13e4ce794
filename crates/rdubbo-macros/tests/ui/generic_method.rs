#[rdubbo::service]
pub trait Echo {
    async fn echo<T>(&self, value: T) -> rdubbo::RpcResult<T>;
}

fn main() {}
