//! The cost pane: running spend per provider and model in each provider's billing currency,
//! the cost per hour at the current rate (over the selected window), tokens in and out, and
//! marks for estimated figures and models without a price.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{Chrome, muted};
use crate::app::{App, ModelCost, window_name};
use crate::format;
use crate::theme::Role;
use relaytop_core::metrics::ProviderStats;

/// The accounts in a few words for the pane's bottom edge, soonest run-out first, as many as
/// fit in `width`: ` legacy 3.968 USD · out in 20m  newapi 1.994 USD · out in 58m `.
fn accounts_title<'a>(app: &App, width: u16) -> Option<Line<'a>> {
    let theme = app.theme();
    let summaries = app.shown().accounts.summaries();
    if summaries.is_empty() {
        return None;
    }
    let mut spans = vec![muted(app, " accounts:")];
    let mut used = 10usize;
    for a in summaries {
        let balance = match (a.unlimited, a.balance, &a.error) {
            (_, _, Some(_)) => "not read".to_owned(),
            (true, _, _) => "unlimited".to_owned(),
            (false, Some(b), _) => format::money(b, &a.currency, false),
            (false, None, _) => continue,
        };
        let out = a.run_out_s.map(|s| {
            format!(
                " · out in {}",
                format::duration_short(s.saturating_mul(1_000_000))
            )
        });
        let len = a.provider.chars().count()
            + balance.chars().count()
            + out.as_ref().map_or(0, |o| o.chars().count())
            + 3;
        if used + len > usize::from(width) {
            break;
        }
        used += len;
        let warn = a.low_balance_warning || a.run_out_warning;
        spans.push(Span::raw("  "));
        spans.push(Span::styled(a.provider.clone(), theme.fg(Role::Title)));
        spans.push(Span::raw(" "));
        let role = if a.low_balance_warning {
            Role::CostWarning
        } else {
            Role::Cost
        };
        spans.push(Span::styled(balance, theme.fg(role)));
        if let Some(out) = out {
            let role = if warn { Role::CostWarning } else { Role::Muted };
            spans.push(Span::styled(out, theme.fg(role)));
        }
    }
    spans.push(Span::raw(" "));
    Some(Line::from(spans))
}

/// One line per relay account, soonest run-out first: `legacy $3.42 left · $12.10/h · runs
/// out in 16m · charged 1.00× list`, its warnings marked.
fn account_lines<'a>(app: &App) -> Vec<Line<'a>> {
    use relaytop_core::account::BillVerdict;
    let theme = app.theme();
    let data = app.shown();
    let mut lines = Vec::new();
    for a in data.accounts.summaries() {
        let mut spans = vec![Span::styled(a.provider.clone(), theme.fg(Role::Title))];
        if let Some(error) = &a.error {
            spans.push(muted(app, format!(" account not read: {error}")));
            lines.push(Line::from(spans));
            continue;
        }
        let balance = if a.unlimited {
            " unlimited".to_owned()
        } else {
            a.balance.map_or_else(String::new, |b| {
                format!(" {} left", format::money(b, &a.currency, false))
            })
        };
        let balance_role = if a.low_balance_warning {
            Role::CostWarning
        } else {
            Role::Cost
        };
        spans.push(Span::styled(balance, theme.fg(balance_role)));
        if let Some(rate) = a.spend_per_hour {
            spans.push(muted(
                app,
                format!(" · {}/h", format::money(rate, &a.currency, false)),
            ));
        }
        if let Some(s) = a.run_out_s {
            let role = if a.run_out_warning {
                Role::CostWarning
            } else {
                Role::Foreground
            };
            spans.push(Span::styled(
                format!(
                    " · runs out in {}",
                    format::duration_short(s.saturating_mul(1_000_000))
                ),
                theme.fg(role),
            ));
        }
        if a.low_balance_warning {
            spans.push(Span::styled(" · LOW BALANCE", theme.fg(Role::CostWarning)));
        }
        lines.push(Line::from(spans));
        // The bill check and the last relay error, each on a line of its own under it.
        let mut detail = vec![muted(app, "  ")];
        if let Some(bill) = &a.bill {
            let (text, role) = match bill.verdict {
                BillVerdict::Waiting => ("bill: waiting for traffic".to_owned(), Role::Muted),
                BillVerdict::Charged { ratio } => (
                    format!("bill: charged {ratio:.2}× list for relaytop's traffic"),
                    if ratio > 1.05 {
                        Role::Warning
                    } else {
                        Role::Muted
                    },
                ),
                BillVerdict::OtherTraffic { .. } => (
                    "bill: fell more than relaytop's traffic explains: other traffic shares this key"
                        .to_owned(),
                    Role::Warning,
                ),
            };
            detail.push(Span::styled(text, theme.fg(role)));
        }
        if detail.len() > 1 {
            lines.push(Line::from(detail));
        }
        if let Some(e) = &a.last_error {
            lines.push(Line::from(vec![
                muted(app, "  "),
                Span::styled(
                    format!("last error: {}: {}", e.label, e.fix),
                    theme.fg(Role::Error),
                ),
            ]));
        }
    }
    lines
}

fn right<'a>(text: String, style: ratatui::style::Style) -> Cell<'a> {
    Cell::from(Line::styled(text, style).right_aligned())
}

pub fn render(frame: &mut Frame, area: Rect, chrome: Chrome, app: &App) {
    let theme = app.theme();
    let data = app.shown();
    let now = app.now_us();
    let window = app.window;
    let totals = data.metrics.totals();
    let total_currency = totals.billing_currency();
    let (total_text, total_estimated) = if total_currency == "mixed" || total_currency.is_empty() {
        (
            format::money(totals.counts.cost.total_usd(), "USD", false),
            totals.counts.cost.is_estimated(),
        )
    } else {
        (
            format::money(totals.counts.cost.billed(), total_currency, false),
            totals.counts.cost.is_estimated(),
        )
    };
    let details = vec![Span::styled(
        format!("{}{total_text}", if total_estimated { "~" } else { "" }),
        theme.fg(Role::Cost).add_modifier(Modifier::BOLD),
    )];
    let right_title = Line::from(muted(
        app,
        format!(" per hour at the last {} ", window_name(window)),
    ));
    let mut block = chrome.block(app, details, Some(right_title));
    // Which relay runs dry first, on the frame: seen even when the table fills the pane.
    if let Some(line) = accounts_title(app, area.width.saturating_sub(4)) {
        block = block.title_bottom(line);
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width < 20 {
        return;
    }

    let width = inner.width;
    let show_tokens = width >= 56;
    let per_hour = |p: &ProviderStats| -> (String, bool) {
        let rate = p.rates(window, now).cost_per_hour_usd;
        let pricing = data.metrics.pricing().provider(p.name());
        let warn = app
            .cost_warning_per_hour_usd()
            .is_some_and(|limit| rate > limit);
        (
            format!(
                "{}/h",
                format::money(
                    rate * pricing.billing_rate,
                    &pricing.billing_currency,
                    false
                )
            ),
            warn,
        )
    };
    let tokens = |input: u64, output: u64, estimated: bool| -> Cell {
        let mark = if estimated { "~" } else { "" };
        let role = if estimated {
            Role::Estimated
        } else {
            Role::Foreground
        };
        right(
            format!(
                "{mark}{}/{}",
                format::compact(input),
                format::compact(output)
            ),
            theme.fg(role),
        )
    };

    // A provider with one model is one row ("legacy · gpt-4.1"); with more, a row of its
    // totals and a row for each model under it.
    let mut rows: Vec<Row> = Vec::new();
    let mut estimated_any = false;
    let mut unpriced: Vec<String> = Vec::new();
    for p in data.metrics.providers() {
        let models: Vec<&ModelCost> = data
            .model_costs
            .iter()
            .filter(|m| m.provider == p.name())
            .collect();
        let (hourly, warn) = per_hour(p);
        let hourly_style = if warn {
            theme.fg(Role::CostWarning).add_modifier(Modifier::BOLD)
        } else {
            theme.fg(Role::Cost)
        };
        let c = &p.counts;
        let estimated = c.tokens.estimated_responses > 0;
        estimated_any |= estimated;
        let mut name = vec![Span::styled(p.name().to_string(), theme.fg(Role::Title))];
        if let [only] = models.as_slice() {
            name.push(muted(app, format!(" · {}", only.model)));
        }
        let mut cells = vec![Cell::from(Line::from(name))];
        cells.push(right(
            format::thousands(c.responses_completed),
            theme.fg(Role::Foreground),
        ));
        if show_tokens {
            cells.push(tokens(c.tokens.input, c.tokens.output, estimated));
        }
        let cost_role = if c.cost.is_estimated() {
            Role::Estimated
        } else {
            Role::Cost
        };
        cells.push(right(
            format::money(c.cost.billed(), p.billing_currency(), c.cost.is_estimated()),
            theme.fg(cost_role),
        ));
        cells.push(right(hourly, hourly_style));
        rows.push(Row::new(cells));
        for m in &models {
            if m.unpriced {
                unpriced.push(format!("{} at {}", m.model, m.provider));
            }
        }
        if models.len() < 2 {
            continue;
        }
        for m in models {
            let estimated = m.estimated_responses > 0;
            let model_role = if m.unpriced {
                Role::CostWarning
            } else {
                Role::Foreground
            };
            let mut cells = vec![Cell::from(Line::from(vec![
                muted(app, "  "),
                Span::styled(m.model.clone(), theme.fg(model_role)),
            ]))];
            cells.push(right(format::thousands(m.calls), theme.fg(Role::Muted)));
            if show_tokens {
                cells.push(tokens(m.input_tokens, m.output_tokens, estimated));
            }
            let cost_role = if estimated {
                Role::Estimated
            } else {
                Role::Muted
            };
            cells.push(right(
                format::money(m.billed(), &m.currency, estimated),
                theme.fg(cost_role),
            ));
            cells.push(Cell::from(""));
            rows.push(Row::new(cells));
        }
    }
    // The run's total, in the shared currency (or list-price US $ when they differ).
    {
        let c = &totals.counts;
        let estimated = c.tokens.estimated_responses > 0;
        let rate = totals.rates(window, now).cost_per_hour_usd;
        let (total, hourly) = if total_currency == "mixed" || total_currency.is_empty() {
            (
                format::money(c.cost.total_usd(), "USD", c.cost.is_estimated()),
                format!("{}/h", format::money(rate, "USD", false)),
            )
        } else {
            let billing_rate = data.metrics.providers().first().map_or(1.0, |p| {
                data.metrics.pricing().provider(p.name()).billing_rate
            });
            (
                format::money(c.cost.billed(), total_currency, c.cost.is_estimated()),
                format!(
                    "{}/h",
                    format::money(rate * billing_rate, total_currency, false)
                ),
            )
        };
        let bold = Modifier::BOLD;
        let mut cells = vec![Cell::from(Span::styled(
            "all",
            theme.fg(Role::Title).add_modifier(bold),
        ))];
        cells.push(right(
            format::thousands(c.responses_completed),
            theme.fg(Role::Foreground).add_modifier(bold),
        ));
        if show_tokens {
            cells.push(tokens(c.tokens.input, c.tokens.output, estimated));
        }
        cells.push(right(total, theme.fg(Role::Cost).add_modifier(bold)));
        cells.push(right(hourly, theme.fg(Role::Cost).add_modifier(bold)));
        rows.push(Row::new(cells));
    }
    let skip = app.cost_offset.min(rows.len().saturating_sub(1));
    let rows: Vec<Row> = rows.into_iter().skip(skip).collect();

    let header_style = theme.fg(Role::Header).add_modifier(Modifier::BOLD);
    let mut header = vec![Cell::from(Span::styled("provider · model", header_style))];
    let mut widths = vec![Constraint::Min(10)];
    header.push(right("calls".into(), header_style));
    widths.push(Constraint::Length(6));
    if show_tokens {
        header.push(right("tok in/out".into(), header_style));
        widths.push(Constraint::Length(10));
    }
    header.push(right("cost".into(), header_style));
    widths.push(Constraint::Length(11));
    header.push(right("per hour".into(), header_style));
    widths.push(Constraint::Length(12));
    let header = Row::new(header);

    let table_rows = rows.len() as u16 + 1;
    let table_area = Rect::new(inner.x, inner.y, inner.width, table_rows.min(inner.height));
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        table_area,
    );

    // Notes under the table, as room allows: the accounts first (which relay runs dry
    // first), then the notes on the figures.
    let mut notes: Vec<Line> = account_lines(app);
    let fees: Vec<String> = data
        .metrics
        .providers()
        .iter()
        .filter_map(|p| {
            let fee = p.fee_per_1000_calls_usd().filter(|f| *f > 0.0)?;
            Some(format!("{} {fee:.2} USD", p.name()))
        })
        .collect();
    if !fees.is_empty() {
        notes.push(Line::from(muted(
            app,
            format!("fees per 1,000 calls: {}", fees.join(", ")),
        )));
    }
    if estimated_any {
        notes.push(Line::from(vec![
            Span::styled("~ ", theme.fg(Role::Estimated)),
            muted(app, "estimated from the text: the relay sent no usage"),
        ]));
    }
    if !unpriced.is_empty() {
        notes.push(Line::from(Span::styled(
            format!("no price for {} (counted as 0)", unpriced.join(", ")),
            theme.fg(Role::CostWarning),
        )));
    }
    if total_currency == "mixed" {
        notes.push(Line::from(muted(
            app,
            "all: in USD, as the providers bill in different currencies",
        )));
    }
    let notes_y = table_area.bottom();
    let room = inner.bottom().saturating_sub(notes_y);
    if room > 0 && !notes.is_empty() {
        let notes: Vec<Line> = notes.into_iter().take(usize::from(room)).collect();
        frame.render_widget(
            Paragraph::new(notes),
            Rect::new(inner.x, notes_y, inner.width, room),
        );
    }
}
