//! Colour for everything berth prints: the one place that knows ANSI styles and decides,
//! through `anstream` (`NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE`, `TERM=dumb`, terminals), whether
//! a stream gets colour. Callers say what a piece of text is; they never write escape codes.

use anstyle::{AnsiColor, Style};

/// What a piece of text means, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Something created or succeeding (green).
    Added,
    /// Something destroyed or failing (red).
    Removed,
    /// Something replaced (magenta).
    Replaced,
    /// Something changed in place, reused, skipped or warned about (yellow).
    Changed,
    /// The inserted words of a diff (bold green).
    Inserted,
    /// The deleted words of a diff (bold red).
    Deleted,
    /// A heading or total (bold).
    Strong,
    /// A value that goes away or matters less (dim).
    Faint,
}

impl Tone {
    fn style(self) -> Style {
        let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
        match self {
            Tone::Added => fg(AnsiColor::Green),
            Tone::Removed => fg(AnsiColor::Red),
            Tone::Replaced => fg(AnsiColor::Magenta),
            Tone::Changed => fg(AnsiColor::Yellow),
            Tone::Inserted => fg(AnsiColor::Green).bold(),
            Tone::Deleted => fg(AnsiColor::Red).bold(),
            Tone::Strong => Style::new().bold(),
            Tone::Faint => Style::new().dimmed(),
        }
    }
}

/// Whether text for one stream is coloured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paint {
    /// Colour on; [`Paint::for_stream`] decides it from the environment.
    pub color: bool,
}

impl Paint {
    /// No colour at all (files, snapshots, JSON).
    pub const NONE: Paint = Paint { color: false };

    /// Colour as the environment and the stream allow it.
    pub fn for_stream(stream: &impl anstream::stream::RawStream) -> Paint {
        Paint {
            color: anstream::AutoStream::choice(stream) != anstream::ColorChoice::Never,
        }
    }

    /// Colour for standard output.
    pub fn stdout() -> Paint {
        Self::for_stream(&std::io::stdout())
    }

    /// Colour for standard error.
    pub fn stderr() -> Paint {
        Self::for_stream(&std::io::stderr())
    }

    /// `text` in the colour of `tone`, or as it is without colour.
    pub fn paint(self, text: &str, tone: Tone) -> String {
        if self.color {
            let style = tone.style();
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_colour_leaves_text_alone() {
        assert_eq!(Paint::NONE.paint("+", Tone::Added), "+");
    }

    #[test]
    fn colour_wraps_text_in_its_style_and_a_reset() {
        let on = Paint { color: true };
        assert_eq!(on.paint("+", Tone::Added), "\u{1b}[32m+\u{1b}[0m");
        assert_eq!(on.paint("x", Tone::Strong), "\u{1b}[1mx\u{1b}[0m");
    }
}
