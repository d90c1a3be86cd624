//! Targets: docker, staging and local (host processes), and the fallback between them.
