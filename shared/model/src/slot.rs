use std::sync::Arc;

use arc_swap::ArcSwapOption;

/// The model being served. Readers take a cheap snapshot (`Arc`) per request and keep using it even
/// when a newly trained model is swapped in meanwhile: hot swap without locks or restarts.
#[derive(Debug)]
pub struct ModelSlot<T> {
    inner: ArcSwapOption<T>,
}

impl<T> Default for ModelSlot<T> {
    fn default() -> Self {
        ModelSlot {
            inner: ArcSwapOption::empty(),
        }
    }
}

impl<T> ModelSlot<T> {
    pub fn new(model: Option<T>) -> Self {
        ModelSlot {
            inner: ArcSwapOption::new(model.map(Arc::new)),
        }
    }

    /// The current model, if any has been trained or loaded.
    pub fn get(&self) -> Option<Arc<T>> {
        self.inner.load_full()
    }

    /// Serves `model` from now on; returns the one it replaced.
    pub fn swap(&self, model: T) -> Option<Arc<T>> {
        self.inner.swap(Some(Arc::new(model)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_its_snapshot_across_a_swap() {
        let slot = ModelSlot::new(Some(1));
        let before = slot.get().unwrap();
        assert_eq!(slot.swap(2).as_deref(), Some(&1));
        assert_eq!(*before, 1);
        assert_eq!(*slot.get().unwrap(), 2);
        assert!(ModelSlot::<u8>::default().get().is_none());
    }
}
