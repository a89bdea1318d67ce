//! The records of the Redis backend: sessions, the codes kept in them and queued mails
//! (`session.rs`, `code.rs`), written and read field by field at the positions the record
//! format defines (`format.rs`, the one definition the Lua scripts follow too); key names and
//! index members (`keys.rs`); the packing of IP addresses and user agents (`packing.rs`). They
//! are what Redis holds between releases, so once deployed they change only compatibly. Must
//! not: talk to Redis.
mod code;
pub mod format;
mod keys;
mod packing;
mod session;

pub(crate) use code::{
    codes_in, decode_code, decode_mail_entry, encode_code, encode_mail_entry,
    encode_session_with_code, MailState,
};
pub(crate) use keys::{from_index_member, index_member};
pub use keys::{tag, Keys};
pub(crate) use session::{decode_session, encode_session, stored_user};

use crate::store::{StoreError, StoreResult};
use format::{Record, CODE_MARK, SEP};

/// Refuses a field that holds a separator of the stored formats: [`SEP`], or [`CODE_MARK`]
/// (no address, name, IP, mac or reference holds either).
fn no_sep(fields: &[&str]) -> StoreResult<()> {
    if fields.iter().any(|f| f.contains([SEP, CODE_MARK])) {
        return Err(StoreError::Internal(
            "a field holds U+001F or a line feed, which cannot be stored".into(),
        ));
    }
    Ok(())
}

/// A field's value, for [`push_record`].
#[derive(Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Num(i64),
}

/// Appends the fields of a record, each at its position and numbers in its form, joined by
/// [`SEP`]: written without `fmt`, since a code request builds two such records
/// (docs/benchmarks.md, workload 2).
fn push_record<const N: usize>(out: &mut String, record: &Record, fields: &[Field; N]) {
    debug_assert_eq!(N, record.len());
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        match f {
            Field::Text(t) => out.push_str(t),
            Field::Num(n) => record.push_number(i, *n, out),
        }
    }
}
