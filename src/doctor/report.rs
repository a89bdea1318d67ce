//! The report: each verdict printed as it comes (`✓`, `-`, `!`, `✗`, then why and the fix), the
//! problems and warnings counted, and the summary line. Text only; nothing is judged here.
use super::checks::Check;
use super::target::Target;
use crate::i18n::Lang;

pub(super) struct Report {
    lang: Lang,
    pub problems: usize,
    warnings: usize,
    /// Checks that could not run (the probe was refused before a cookie was set).
    pub skipped: usize,
}

impl Report {
    pub fn new(lang: Lang) -> Report {
        Report {
            lang,
            problems: 0,
            warnings: 0,
            skipped: 0,
        }
    }

    pub fn heading(&self, target: &Target) {
        let (url, origin) = (target.display_url(), &target.origin);
        println!("{}", t!(self.lang, "report.heading", url, origin));
    }

    pub fn add(&mut self, check: Check) {
        match &check {
            Check::Problem { .. } => self.problems += 1,
            Check::Warn { .. } => self.warnings += 1,
            Check::Ok(_) | Check::Info { .. } => {}
        }
        print!("{}", render(&check, self.lang));
    }

    pub fn add_all(&mut self, checks: Vec<Check>) {
        for c in checks {
            self.add(c);
        }
    }

    pub fn summary(&self) {
        println!("{}", self.summary_line());
    }

    fn summary_line(&self) -> String {
        let (lang, n, w) = (self.lang, self.problems, self.warnings);
        let mut line = match n {
            0 => t!(lang, "report.no_problems"),
            1 => t!(lang, "report.one_problem"),
            n => t!(lang, "report.problems", n),
        };
        match w {
            0 => {}
            1 => line.push_str(&t!(lang, "report.one_warning")),
            w => line.push_str(&t!(lang, "report.warnings", w)),
        }
        if self.skipped > 0 {
            line.push_str(&t!(lang, "report.skipped"));
        }
        line
    }
}

/// One check: its mark and what, then why and the fix indented, one line each.
fn render(check: &Check, lang: Lang) -> String {
    let fix_label = t!(lang, "report.fix");
    let (mark, what, why, fix) = match check {
        Check::Ok(what) => ("✓", what, "", ""),
        Check::Info { what, why } => ("-", what, why.as_str(), ""),
        Check::Warn { what, why, fix } => ("!", what, why.as_str(), fix.as_str()),
        Check::Problem { what, why, fix } => ("✗", what, why.as_str(), fix.as_str()),
    };
    let mut out = format!("{mark} {what}\n");
    for line in why.lines().filter(|l| !l.is_empty()) {
        out.push_str(&format!("    {line}\n"));
    }
    // The fix's later lines line up under its first, after the English label.
    for (i, line) in fix.lines().filter(|l| !l.is_empty()).enumerate() {
        let label = if i == 0 { fix_label.as_str() } else { "     " };
        out.push_str(&format!("    {label}{line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_render_with_their_fix_in_both_languages() {
        let c = Check::problem("what".into(), "why".into(), "do this".into());
        assert_eq!(render(&c, Lang::En), "✗ what\n    why\n    fix: do this\n");
        assert_eq!(render(&c, Lang::Zh), "✗ what\n    why\n    修复：do this\n");
        let two = Check::warn("w".into(), String::new(), "one\ntwo".into());
        assert_eq!(render(&two, Lang::En), "! w\n    fix: one\n         two\n");
    }

    #[test]
    fn the_summary_counts_problems_warnings_and_skipped_checks() {
        let mut r = Report::new(Lang::En);
        assert_eq!(r.summary_line(), "no problems found");
        (r.problems, r.warnings, r.skipped) = (1, 2, 1);
        assert_eq!(
            r.summary_line(),
            "1 problem found (2 warnings); the cookie checks could not run"
        );
        r.lang = Lang::Zh;
        (r.problems, r.warnings, r.skipped) = (3, 1, 0);
        assert_eq!(r.summary_line(), "发现 3 个问题（1 个警告）");
    }
}
