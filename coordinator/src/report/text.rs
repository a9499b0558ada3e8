//! Small text helpers of the page: HTML escaping, JSON safe inside `<script>`, base64 for
//! data URIs, numbers and dates for people.

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A collapsed warning: `summary` (already HTML) over a list of `what: why` items, escaped;
/// nothing when there are no items.
pub fn warning_list<W: AsRef<str>, R: AsRef<str>>(
    summary: &str,
    items: impl IntoIterator<Item = (W, R)>,
) -> String {
    let list: String = items
        .into_iter()
        .map(|(what, why)| {
            format!(
                "<li>{}: {}</li>",
                escape(what.as_ref()),
                escape(why.as_ref())
            )
        })
        .collect();
    if list.is_empty() {
        return String::new();
    }
    format!("<details><summary class=\"warn\">{summary}</summary><ul>{list}</ul></details>\n")
}

/// JSON text made safe inside a `<script>` element: `<` only occurs inside JSON strings,
/// where `\u003c` means the same, so no `</script>` or `<!--` can end the element early.
pub fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// Standard base64 with padding (RFC 4648), for `data:` URIs.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// φ and its standard error for people: three significant digits, "—" for NaN.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "—".to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 0.01 && v.abs() < 1e4 {
        let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
        format!("{v:.digits$}")
    } else {
        format!("{v:.2e}")
    }
}

/// A fraction in [0, 1] as a percentage with one decimal; "—" when absent.
pub fn percent(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.1}%", 100.0 * v),
        _ => "—".to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss UTC`.
pub fn utc(seconds: f64) -> String {
    let s = seconds.floor() as i64;
    let (days, rest) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Seconds as `1h 02m 03s` / `2m 03s` / `4.2s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".to_string();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let s = seconds.round() as u64;
    if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_every_html_special_character() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("dog.n.01 — ok"), "dog.n.01 — ok");
    }

    #[test]
    fn script_json_cannot_close_the_script_element() {
        let json =
            serde_json::json!({"name": "</script><script>alert(1)</script><!--"}).to_string();
        let safe = script_json(&json);
        assert!(!safe.contains('<'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["name"], "</script><script>alert(1)</script><!--");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn numbers_dates_and_durations_read_well() {
        assert_eq!(number(0.268938), "0.269");
        assert_eq!(number(-1.5), "-1.50");
        assert_eq!(number(123.456), "123");
        assert_eq!(number(0.000219), "2.19e-4");
        assert_eq!(number(f64::NAN), "—");
        assert_eq!(percent(Some(0.4567)), "45.7%");
        assert_eq!(percent(None), "—");
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_210_096.7), "2024-02-29 12:34:56 UTC");
        assert_eq!(duration(4.26), "4.3s");
        assert_eq!(duration(3723.0), "1h 02m 03s");
    }
}
