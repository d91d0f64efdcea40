//! The pure domain rules, one file each: no I/O, no ports called, only decisions.

pub mod conversation;
pub mod edit_window;
pub mod permissions;
pub mod presence;
