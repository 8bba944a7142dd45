//! The agent's own log lines (stub: the config helper replaces this file).
