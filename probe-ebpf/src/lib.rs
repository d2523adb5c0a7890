#![no_std]
// Lets host tooling (clippy, rust-analyzer) see the crate; the program itself is in main.rs.
