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
