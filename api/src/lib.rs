//! REST gateway (coming).
