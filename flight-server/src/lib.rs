//! Flight SQL server (coming).
