//! The REST gateway against a real lake, a real `redis-server` started on a free port, and
//! a real HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod cache;
mod cloud;
mod errors;
mod formats;
mod hardening;
mod kit;
mod requests;
