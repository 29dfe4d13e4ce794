#[rdubbo::service]
pub trait Notifier {
    async fn notify(&self, message: String);
}

fn main() {}
