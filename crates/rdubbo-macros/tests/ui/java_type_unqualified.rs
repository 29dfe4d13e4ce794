#[derive(serde::Serialize, rdubbo::JavaType)]
#[serde(rename = "User")]
pub struct User {
    pub name: String,
}

fn main() {}
