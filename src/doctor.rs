//! `mailcode doctor URL [--origin O] [--lang zh|en]`: checks a running deployment from the
//! outside, the way a browser would (SPEC §4). (Being written: see issue 4.)
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Base URL of the deployment, e.g. https://login.example.com
    pub url: String,
    /// The origin of the page that will call the API (checks CORS with credentials for it)
    #[arg(long)]
    pub origin: Option<String>,
    /// Language of the report: en or zh
    #[arg(long, default_value = "en")]
    pub lang: String,
}

pub fn main(args: DoctorArgs) -> ExitCode {
    eprintln!("mailcode doctor {}: not built yet", args.url);
    ExitCode::from(2)
}
