//! One module per command. Each parses and checks its input before it starts anything, so
//! bad input fails fast and nothing is left half-done.

pub(crate) mod call;
pub(crate) mod cert;
pub(crate) mod demo;
pub(crate) mod exchange;
pub(crate) mod gateway;
pub(crate) mod info;
pub(crate) mod monitor;
pub(crate) mod passwd;
pub(crate) mod publish;
pub(crate) mod serve;
pub(crate) mod services;
