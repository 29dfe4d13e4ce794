#[derive(rdubbo::JavaType)]
pub struct User {
    pub name: String,
}

fn main() {}
