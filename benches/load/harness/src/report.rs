//! Figures per server and repetition, printed as Markdown tables: each cell
//! the median of the repetitions with their minimum and maximum, each goal
//! a ratio computed within each repetition (servers of one repetition run
//! one after another, so they share the machine's conditions).

use crate::servers::Kind;

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    goals: Vec<Goal>,
    pub failures: Vec<String>,
}

struct Row {
    label: String,
    /// Per server, one value per repetition (`None` where the run failed).
    values: Vec<(Kind, Vec<Option<f64>>)>,
}

struct Goal {
    label: String,
    /// `numerator / denominator` per repetition (each a server's value in a
    /// row; without a denominator, the numerator itself) must be at most
    /// (or, when `at_least`, at least) `bound`.
    numerator: (String, Kind),
    denominator: Option<(String, Kind)>,
    bound: f64,
    at_least: bool,
}

impl Report {
    pub fn record(&mut self, label: &str, kind: Kind, value: Option<f64>) {
        let row = match self.rows.iter_mut().position(|row| row.label == label) {
            Some(index) => &mut self.rows[index],
            None => {
                self.rows.push(Row {
                    label: label.to_owned(),
                    values: Vec::new(),
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        match row.values.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, values)) => values.push(value),
            None => row.values.push((kind, vec![value])),
        }
    }

    /// A goal on the ratio of two servers' values in row `row`.
    pub fn goal(
        &mut self,
        label: &str,
        row: &str,
        numerator: Kind,
        denominator: Kind,
        bound: f64,
        at_least: bool,
    ) {
        self.goals.push(Goal {
            label: label.to_owned(),
            numerator: (row.to_owned(), numerator),
            denominator: Some((row.to_owned(), denominator)),
            bound,
            at_least,
        });
    }

    /// A goal on the ratio of values in two rows: `numerator`'s in
    /// `numerator_row` over `denominator`'s in `denominator_row`.
    pub fn goal_across(
        &mut self,
        label: &str,
        (numerator_row, numerator): (&str, Kind),
        (denominator_row, denominator): (&str, Kind),
        bound: f64,
    ) {
        self.goals.push(Goal {
            label: label.to_owned(),
            numerator: (numerator_row.to_owned(), numerator),
            denominator: Some((denominator_row.to_owned(), denominator)),
            bound,
            at_least: false,
        });
    }

    /// A goal on a server's own value in a row: at most `bound`.
    pub fn goal_at_most(&mut self, label: &str, row: &str, kind: Kind, bound: f64) {
        self.goals.push(Goal {
            label: label.to_owned(),
            numerator: (row.to_owned(), kind),
            denominator: None,
            bound,
            at_least: false,
        });
    }

    fn values(&self, row: &str, kind: Kind) -> Option<&[Option<f64>]> {
        let row = self.rows.iter().find(|r| r.label == row)?;
        row.values
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, values)| values.as_slice())
    }

    pub fn print(&self, kinds: &[Kind], reps: usize) {
        let mut header = format!("| median [min-max] of {reps} runs |");
        let mut rule = String::from("|---|");
        for kind in kinds {
            header += &format!(" {kind} |");
            rule += "---|";
        }
        println!("{header}\n{rule}");
        for row in &self.rows {
            let mut line = format!("| {} |", row.label);
            for kind in kinds {
                let cell = self
                    .values(&row.label, *kind)
                    .map_or_else(|| "-".to_owned(), spread);
                line += &format!(" {cell} |");
            }
            println!("{line}");
        }
        if self.goals.is_empty() {
            return;
        }
        println!(
            "\n| goal | ratio (or value) in each run: median [min-max] | result |\n|---|---|---|"
        );
        for goal in &self.goals {
            let numerator = self.values(&goal.numerator.0, goal.numerator.1);
            let ratios: Vec<Option<f64>> = match (numerator, &goal.denominator) {
                (Some(a), None) => a.to_vec(),
                (Some(a), Some((row, kind))) => match self.values(row, *kind) {
                    Some(b) => a
                        .iter()
                        .zip(b)
                        .map(|(a, b)| Some(a.as_ref()? / b.as_ref()?))
                        .collect(),
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            let result = match median(&ratios) {
                None => "not measured".to_owned(),
                Some(ratio) if goal.at_least && ratio >= goal.bound => "met".to_owned(),
                Some(ratio) if !goal.at_least && ratio <= goal.bound => "met".to_owned(),
                Some(ratio) => format!(
                    "MISSED by {:.1} %",
                    100.0
                        * if goal.at_least {
                            goal.bound / ratio - 1.0
                        } else {
                            ratio / goal.bound - 1.0
                        }
                ),
            };
            println!("| {} | {} | {result} |", goal.label, spread(&ratios));
        }
    }
}

/// The median of the values that were measured.
pub fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut measured: Vec<f64> = values.iter().flatten().copied().collect();
    if measured.is_empty() {
        return None;
    }
    measured.sort_by(f64::total_cmp);
    let middle = measured.len() / 2;
    Some(if measured.len() % 2 == 1 {
        measured[middle]
    } else {
        (measured[middle - 1] + measured[middle]) / 2.0
    })
}

/// `median [min-max]`, with "failed" for each run that failed.
fn spread(values: &[Option<f64>]) -> String {
    let measured: Vec<f64> = values.iter().flatten().copied().collect();
    let failed = values.len() - measured.len();
    let mut cell = match median(values) {
        None => String::new(),
        Some(m) if measured.len() == 1 => number(m),
        Some(m) => {
            let min = measured.iter().copied().fold(f64::INFINITY, f64::min);
            let max = measured.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{} [{}-{}]", number(m), number(min), number(max))
        }
    };
    if failed > 0 {
        if !cell.is_empty() {
            cell += ", ";
        }
        cell += &format!("{failed} failed");
    }
    cell
}

/// Three significant figures or so, without scientific notation.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The value at quantile `q` (0 to 1) of sorted values, by nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_failed_runs() {
        assert_eq!(median(&[Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(4.0), Some(1.0)]), Some(2.5));
        assert_eq!(median(&[None, Some(7.0), None]), Some(7.0));
        assert_eq!(median(&[None]), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&sorted, 0.5), Some(50));
        assert_eq!(quantile(&sorted, 0.99), Some(99));
        assert_eq!(quantile(&sorted, 1.0), Some(100));
        assert_eq!(quantile(&sorted, 0.0), Some(1));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn cells_show_spread_and_failures() {
        assert_eq!(
            spread(&[Some(2.0), Some(1.0), Some(30.0)]),
            "2.00 [1.00-30.0]"
        );
        assert_eq!(spread(&[Some(250.0)]), "250");
        assert_eq!(spread(&[Some(0.5), None]), "0.500, 1 failed");
        assert_eq!(spread(&[None, None]), "2 failed");
    }
}

/// A small SVG bar chart of one row: each server's median as a bar, its
/// minimum and maximum as a whisker, on a logarithmic scale when the values
/// span more than 20x (the Node recipe beside the Rust servers).
pub fn chart(title: &str, bars: &[(String, Vec<Option<f64>>)]) -> Option<String> {
    let bars: Vec<(&str, f64, f64, f64)> = bars
        .iter()
        .filter_map(|(name, values)| {
            let measured: Vec<f64> = values.iter().flatten().copied().collect();
            let median = median(values)?;
            let min = measured.iter().copied().fold(f64::INFINITY, f64::min);
            let max = measured.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Some((name.as_str(), median, min, max))
        })
        .filter(|(_, median, min, _)| *median > 0.0 && *min > 0.0)
        .collect();
    if bars.is_empty() {
        return None;
    }
    let top = bars.iter().map(|bar| bar.3).fold(0.0, f64::max);
    let bottom = bars.iter().map(|bar| bar.2).fold(f64::INFINITY, f64::min);
    let log = top / bottom > 20.0;
    // Where a value lands on a 0..1 scale.
    let place = |value: f64| {
        if log {
            let low = (bottom / 2.0).log10();
            (value.log10() - low) / (top.log10() - low)
        } else {
            value / top
        }
    };
    let (left, width, row, head) = (70.0, 380.0, 26.0, 34.0);
    let height = head + row * bars.len() as f64 + 18.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"560\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"560\" height=\"{height}\" fill=\"white\"/>\n\
         <text x=\"8\" y=\"18\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for (index, (name, median, min, max)) in bars.iter().enumerate() {
        let y = head + row * index as f64;
        let end = left + width * place(*median);
        let colour = match *name {
            "ours" | "hub" | "hub10" => "#2b6cb0",
            "floor" => "#718096",
            _ => "#c05621",
        };
        svg += &format!(
            "<text x=\"8\" y=\"{:.1}\">{}</text>\n\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"16\" fill=\"{colour}\"/>\n\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            y + 12.0,
            escape(name),
            (end - left).max(1.0),
            left + width * place(*min),
            left + width * place(*max),
            y + 8.0,
            y + 8.0,
            left + width * place(*max) + 6.0,
            y + 12.0,
            number(*median),
        );
    }
    svg += &format!(
        "<text x=\"{left}\" y=\"{:.1}\" fill=\"#555\">median of the runs, whisker: min to max{}</text>\n</svg>\n",
        height - 4.0,
        if log { "; logarithmic scale" } else { "" }
    );
    Some(svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Report {
    /// One SVG chart per row, into `dir`, named after the row.
    pub fn write_charts(&self, dir: &std::path::Path, kinds: &[Kind]) -> std::io::Result<usize> {
        std::fs::create_dir_all(dir)?;
        let mut written = 0;
        for row in &self.rows {
            let bars: Vec<(String, Vec<Option<f64>>)> = kinds
                .iter()
                .filter_map(|kind| {
                    let values = self.values(&row.label, *kind)?;
                    Some((kind.name().to_owned(), values.to_vec()))
                })
                .collect();
            let Some(svg) = chart(&row.label, &bars) else {
                continue;
            };
            std::fs::write(dir.join(format!("{}.svg", slug(&row.label))), svg)?;
            written += 1;
        }
        Ok(written)
    }
}

/// A file name from a row's label: lowercase words joined by dashes.
pub fn slug(label: &str) -> String {
    let mut slug = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod chart_tests {
    use super::*;

    #[test]
    fn a_chart_has_a_bar_per_server_and_goes_logarithmic_for_wide_spreads() {
        let bars = vec![
            ("ours".to_owned(), vec![Some(80.0), Some(70.0), Some(90.0)]),
            ("node".to_owned(), vec![Some(4000.0), None, Some(4400.0)]),
        ];
        let svg = chart("burst <1>", &bars).unwrap();
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(svg.contains("burst &lt;1&gt;"));
        assert!(svg.contains("logarithmic"));
        let narrow = chart("x", &bars[..1]).unwrap();
        assert!(!narrow.contains("logarithmic"));
        assert_eq!(chart("none", &[("a".to_owned(), vec![None])]), None);
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(
            slug("burst, 1 conn x 200000 events: server CPU per event (ns)"),
            "burst-1-conn-x-200000-events-server-cpu-per-event-ns"
        );
    }
}
