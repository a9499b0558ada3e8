//! A small RFC 4180 reader for the result CSVs (the coordinator has no CSV dependency, and
//! these files are hint's own: a header, then one record per line, names quoted when needed).

/// Records of a CSV text (RFC 4180: quoted fields may hold commas, quotes and line breaks),
/// header first; errors name the line.
pub fn csv_records(text: &str) -> impl Iterator<Item = Result<Vec<String>, String>> + '_ {
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    std::iter::from_fn(move || {
        chars.peek()?;
        let start = line;
        let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
        loop {
            match (chars.next(), quoted) {
                (None, true) => return Some(Err(format!("line {start}: unterminated quote"))),
                (None, false) => break,
                (Some('"'), true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (Some('"'), true) => quoted = false,
                (Some('"'), false) if field.is_empty() => quoted = true,
                (Some('\n'), false) => {
                    line += 1;
                    break;
                }
                (Some('\r'), false) if chars.peek() == Some(&'\n') => {}
                (Some(','), false) => fields.push(std::mem::take(&mut field)),
                (Some(c), _) => {
                    line += usize::from(c == '\n');
                    field.push(c);
                }
            }
        }
        fields.push(field);
        Some(Ok(fields))
    })
}

/// The records after a header that must be `columns`, each with that many fields; errors
/// name the line.
pub fn csv_table<'a>(
    text: &'a str,
    columns: &'a [&'a str],
) -> Result<impl Iterator<Item = Result<Vec<String>, String>> + 'a, String> {
    let mut records = csv_records(text);
    let header = records.next().ok_or("empty file")??;
    if header != columns {
        return Err(format!(
            "header is {:?}, expected {:?}",
            header.join(","),
            columns.join(",")
        ));
    }
    Ok(records.enumerate().map(move |(i, r)| {
        let r = r?;
        if r.len() == columns.len() {
            Ok(r)
        } else {
            Err(format!(
                "record {}: {} fields, expected {}",
                i + 1,
                r.len(),
                columns.len()
            ))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_unquote_fields_with_separators_and_line_breaks() {
        let text = "a,b\r\n\"x,\"\"y\"\"\",2\n\"two\nlines\",3\n";
        let records: Vec<_> = csv_records(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            records,
            vec![
                vec!["a", "b"],
                vec!["x,\"y\"", "2"],
                vec!["two\nlines", "3"]
            ]
        );
        let error = csv_records("a\n\"open,1\n").nth(1).unwrap().unwrap_err();
        assert!(error.contains("line 2"), "{error}");
    }
}
