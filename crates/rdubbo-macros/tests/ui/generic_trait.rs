#[rdubbo::service]
pub trait Store<T> {
    async fn get(&self, key: String) -> rdubbo::RpcResult<String>;
}

fn main() {}
