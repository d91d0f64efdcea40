//! SQL functions both backends know, declared once for diesel.

#![allow(missing_docs)]

use diesel::sql_types::{Nullable, Timestamp};

diesel::define_sql_function! {
    /// `COALESCE(x, y)` over nullable timestamps (keeps a first receipt time).
    fn coalesce(x: Nullable<Timestamp>, y: Nullable<Timestamp>) -> Nullable<Timestamp>;
}
