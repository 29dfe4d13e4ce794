#[derive(rdubbo::JavaType)]
#[java(name = "com.example.User")]
pub struct User {
    pub name: String,
}

fn main() {}
