//! The table's columns: which fit a terminal's width, and their titles.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Column {
    Name,
    Hook,
    Mode,
    RouteLocalnet,
    Matched,
    Bytes,
    Dropped,
    Replied,
    Rate,
    Samples,
    Trend,
}

impl Column {
    pub(super) const fn right_aligned(self) -> bool {
        matches!(
            self,
            Self::Matched | Self::Bytes | Self::Dropped | Self::Replied | Self::Rate
        )
    }

    pub(super) fn title(self, columns: &Columns) -> String {
        match self {
            Self::Name => "INTERFACE".to_owned(),
            Self::Hook => "HOOK".to_owned(),
            Self::Mode => "MODE".to_owned(),
            Self::RouteLocalnet => "LOCALNET".to_owned(),
            Self::Matched => "MATCHED".to_owned(),
            Self::Bytes => "BYTES".to_owned(),
            Self::Dropped => "DROPPED".to_owned(),
            Self::Replied => "REPLIED".to_owned(),
            Self::Rate => "RATE".to_owned(),
            Self::Samples => "SAMPLES".to_owned(),
            Self::Trend => format!("TREND {}", short_duration(columns.trend_span)),
        }
    }
}

/// The columns that fit a width, and theirs.
pub(super) struct Columns {
    pub(super) list: Vec<(Column, u16)>,
    /// What the trend column's width covers.
    trend_span: Duration,
}

impl Columns {
    /// The essential columns first; the others while the trend keeps 24 columns; the trend
    /// gets the rest.
    pub(super) fn for_width(width: u16, interfaces: &[&InterfaceReport], bucket: Duration) -> Self {
        let longest_name = interfaces
            .iter()
            .map(|i| printable(&i.name).chars().count())
            .max()
            .unwrap_or(0);
        let name = longest_name.clamp(9, 16) as u16;
        let mut list = vec![
            (Column::Name, name),
            (Column::Hook, 7),
            (Column::Mode, 7),
            (Column::RouteLocalnet, 8),
            (Column::Matched, 8),
            (Column::Dropped, 8),
            (Column::Rate, 8),
        ];
        let used = |list: &[(Column, u16)]| -> u16 { list.iter().map(|(_, w)| w + 1).sum::<u16>() };
        let replies = interfaces
            .iter()
            .any(|i| i.egress || i.totals.packets_replied > 0);
        let extras = [
            (Column::Replied, 8, replies),
            (Column::RouteLocalnet, 16, true),
            (Column::Bytes, 10, true),
            (Column::Samples, 17, true),
            (Column::Matched, 12, true),
            (Column::Dropped, 12, true),
        ];
        for (column, extra_width, wanted) in extras {
            if !wanted || used(&list) + extra_width + 1 + 24 > width {
                continue;
            }
            match list.iter_mut().find(|(c, _)| *c == column) {
                Some((_, w)) => *w = extra_width,
                None => {
                    let before = list
                        .iter()
                        .position(|(c, _)| *c == Column::Rate)
                        .unwrap_or(list.len());
                    list.insert(before, (column, extra_width));
                }
            }
        }
        // Longer names whole while the trend keeps 24 columns.
        let spare = width.saturating_sub(used(&list) + 24);
        let wanted = (longest_name.min(32) as u16).saturating_sub(name);
        list[0].1 += wanted.min(spare);
        // Narrower than the essential columns: the least telling go, the name shrinks.
        let shrink_name = |list: &mut Vec<(Column, u16)>, least: u16| {
            let over = used(list).saturating_sub(width);
            list[0].1 = list[0].1.saturating_sub(over).max(least.min(list[0].1));
        };
        for least in [Column::Rate, Column::Hook] {
            if used(&list) > width {
                list.retain(|(column, _)| *column != least);
            }
        }
        shrink_name(&mut list, 9);
        for least in [Column::Dropped, Column::RouteLocalnet] {
            if used(&list) > width {
                list.retain(|(column, _)| *column != least);
            }
        }
        shrink_name(&mut list, 4);
        let trend = width.saturating_sub(used(&list));
        if trend >= 6 {
            list.push((Column::Trend, trend));
        }
        Self {
            list,
            trend_span: bucket * u32::from(trend),
        }
    }

    pub(super) fn has(&self, column: Column) -> bool {
        self.list.iter().any(|(c, _)| *c == column)
    }
}
