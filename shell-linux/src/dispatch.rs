//! HTTP dispatch to Datadog (stub: the dispatch helper replaces this file).
