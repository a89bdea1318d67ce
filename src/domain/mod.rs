//! Domain types: every value from outside becomes one of these at the edge, once, and flows take
//! these types, never raw strings (STYLE §2).
pub mod code;
pub mod email;
pub mod password;
pub mod session;
pub mod user_id;
pub mod username;

pub use code::{CodePurpose, InvalidCode, OneTimeCode};
pub use email::{Email, InvalidEmail};
pub use password::{InvalidPassword, Password};
pub use session::{SessionId, SessionKey, SessionKind, SessionRecord, SessionUser};
pub use user_id::UserId;
pub use username::{InvalidUsername, Username};
