#![no_std]
// Lets host tooling (clippy, rust-analyzer) see the crate; the programs are in main.rs.
