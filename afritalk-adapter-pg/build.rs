//! Rebuilds the crate when a migration is added or changed: `embed_migrations!`
//! reads the folder at compile time, and cargo would not notice on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
