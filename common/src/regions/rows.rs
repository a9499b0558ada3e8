//! Region rows in columns, as the extraction stage accumulates them.

/// One row of a region file, borrowed from [`RegionRows`] or handed to
/// [`RegionRows::push`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionRow<'a> {
    /// The image's id.
    pub image_id: u64,
    /// The image's label index.
    pub label: u32,
    /// Feature-map row.
    pub y: u16,
    /// Feature-map column.
    pub x: u16,
    /// Normalised saliency.
    pub saliency: f32,
    /// Inside the responsible region?
    pub foreground: bool,
    /// The `D` activations at the position.
    pub activation: &'a [f32],
}

/// Region rows in columns, as the extraction stage accumulates them and [`read_regions`](super::read_regions)
/// returns them. `activation` is row-major with `D` values per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionRows {
    /// Image id per row.
    pub image_id: Vec<u64>,
    /// Label index per row.
    pub label: Vec<u32>,
    /// Feature-map row per row.
    pub y: Vec<u16>,
    /// Feature-map column per row.
    pub x: Vec<u16>,
    /// Normalised saliency per row.
    pub saliency: Vec<f32>,
    /// Foreground flag per row.
    pub foreground: Vec<bool>,
    /// `D` activations per row, row after row.
    pub activation: Vec<f32>,
}

impl RegionRows {
    /// Empty rows with room for `rows` rows of `d` channels.
    pub fn with_capacity(rows: usize, d: usize) -> Self {
        RegionRows {
            image_id: Vec::with_capacity(rows),
            label: Vec::with_capacity(rows),
            y: Vec::with_capacity(rows),
            x: Vec::with_capacity(rows),
            saliency: Vec::with_capacity(rows),
            foreground: Vec::with_capacity(rows),
            activation: Vec::with_capacity(rows * d),
        }
    }

    /// Number of rows (the length of `image_id`).
    pub fn len(&self) -> usize {
        self.image_id.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.image_id.is_empty()
    }

    /// Appends one row.
    pub fn push(&mut self, row: RegionRow<'_>) {
        self.image_id.push(row.image_id);
        self.label.push(row.label);
        self.y.push(row.y);
        self.x.push(row.x);
        self.saliency.push(row.saliency);
        self.foreground.push(row.foreground);
        self.activation.extend_from_slice(row.activation);
    }

    /// Row `i` when rows have `d` channels.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn row(&self, i: usize, d: usize) -> RegionRow<'_> {
        RegionRow {
            image_id: self.image_id[i],
            label: self.label[i],
            y: self.y[i],
            x: self.x[i],
            saliency: self.saliency[i],
            foreground: self.foreground[i],
            activation: &self.activation[i * d..(i + 1) * d],
        }
    }

    /// Removes all rows, keeping the allocations for the next batch.
    pub fn clear(&mut self) {
        self.image_id.clear();
        self.label.clear();
        self.y.clear();
        self.x.clear();
        self.saliency.clear();
        self.foreground.clear();
        self.activation.clear();
    }

    /// Checks every column has one value per row (`d` for `activation`).
    pub(super) fn check_shape(&self, d: usize) -> Result<(), (&'static str, usize, usize)> {
        let rows = self.len();
        let lengths = [
            ("label", self.label.len()),
            ("y", self.y.len()),
            ("x", self.x.len()),
            ("saliency", self.saliency.len()),
            ("foreground", self.foreground.len()),
        ];
        for (column, actual) in lengths {
            if actual != rows {
                return Err((column, rows, actual));
            }
        }
        if self.activation.len() != rows * d {
            return Err(("activation", rows * d, self.activation.len()));
        }
        Ok(())
    }
}
