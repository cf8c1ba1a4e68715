//! Chapters of the guide that do not fit on the crate's front page. Each is a
//! module holding documentation only.

pub mod scaling_out;
pub mod tls;
pub mod writing_a_protocol;
