//! Plain-text tables for command output (`check`, `status`): columns padded
//! to their widest cell, the last column unpadded.

use std::io::Write;

/// Writes `rows` (the first one is the header) as aligned columns.
pub fn write<const N: usize>(out: &mut dyn Write, rows: &[[String; N]]) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_and_lines_are_trimmed() {
        let rows = [
            ["NODE".to_string(), "STATE".into(), "NOTE".into()],
            ["n1".to_string(), "RUNNING".into(), "".into()],
            ["node-two".to_string(), "ä".into(), "x".into()],
        ];
        let mut out = Vec::new();
        super::write(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NODE      STATE    NOTE\nn1        RUNNING\nnode-two  ä        x\n"
        );
    }
}
