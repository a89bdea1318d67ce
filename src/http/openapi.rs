//! The OpenAPI document, generated from the route annotations and the body types themselves, so
//! it cannot drift from the code.
use utoipa::OpenApi;

use crate::http::routes::{account, backend, codes, ops, sign_in};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailcode",
        description = "Email-code login with server-side sessions. Every answer is {code, msg, data}."
    ),
    paths(
        codes::login_code,
        codes::register_code,
        codes::reset_code,
        codes::status,
        sign_in::get_token,
        sign_in::passwordless,
        sign_in::register,
        sign_in::reset,
        account::me,
        account::logout,
        account::sessions,
        account::revoke,
        backend::auth_check,
        backend::token,
        backend::jwks,
        backend::discovery,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(
        codes::EmailCodeBody,
        codes::CodeSentData,
        codes::CodeStatusData,
        sign_in::LoginBody,
        sign_in::CodeLoginBody,
        sign_in::ResetBody,
        sign_in::SignedInData,
        account::MeData,
        account::SessionTimes,
        account::SessionInfo,
        account::SessionList,
        backend::WhoData,
        backend::TokenData,
    ))
)]
pub struct ApiDoc;
