//! Aligned columns, as istioctl prints them with Go's `tabwriter`: each
//! column as wide as its widest cell plus padding, the last one unpadded.

use std::fmt::Write;

/// Rows of cells, the first usually the header.
#[derive(Debug)]
pub struct Table {
    padding: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose columns are `padding` spaces apart (istioctl uses 5
    /// for most tables, 1 for listeners).
    pub fn new(padding: usize, header: &[&str]) -> Table {
        Table {
            padding,
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}", width = widths[i] + self.padding);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_with_the_widest_cell() {
        let mut t = Table::new(2, &["NAME", "CDS", "VERSION"]);
        t.row(vec!["a-long-name".into(), "SYNCED".into(), "1.40.0".into()]);
        t.row(vec!["b".into(), "NOT SENT".into(), "".into()]);
        let expected = [
            format!("{:13}{:10}VERSION", "NAME", "CDS"),
            format!("{:13}{:10}1.40.0", "a-long-name", "SYNCED"),
            format!("{:13}NOT SENT", "b"),
        ];
        assert_eq!(t.render(), expected.join("\n") + "\n");
    }
}
