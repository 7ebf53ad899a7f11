//! An instruction sequence with forward jumps to places named before they are known,
//! resolved when the sequence is finished: enough for the two programs, which only
//! ever skip ahead (the verifier refuses loops it cannot bound).

use crate::insn::Insn;

/// A place in the sequence, bound by [`Assembler::bind`].
#[derive(Clone, Copy)]
pub struct Label(usize);

#[derive(Default)]
pub struct Assembler {
    insns: Vec<Insn>,
    /// Where each label was bound, by label.
    places: Vec<Option<usize>>,
    /// Each jump's index, and the label it goes to.
    jumps: Vec<(usize, Label)>,
}

impl Assembler {
    pub fn label(&mut self) -> Label {
        self.places.push(None);
        Label(self.places.len() - 1)
    }

    pub fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    pub fn extend(&mut self, insns: impl IntoIterator<Item = Insn>) {
        self.insns.extend(insns);
    }

    /// `jump` (any jump instruction) to `to`, its offset filled in by
    /// [`Assembler::finish`].
    pub fn jump(&mut self, jump: Insn, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.insns.push(jump);
    }

    /// The next instruction is where `label` jumps to.
    pub fn bind(&mut self, label: Label) {
        self.places[label.0] = Some(self.insns.len());
    }

    /// The instructions, every jump pointing at its label. A label never bound sends
    /// its jumps past the end, which the verifier refuses ("jump out of range"); the
    /// programs are a few dozen instructions, far within an `i16` offset.
    pub fn finish(mut self) -> Vec<Insn> {
        for (at, label) in self.jumps {
            let place = self.places[label.0].unwrap_or(self.insns.len() + 1);
            let offset = i16::try_from(place as isize - at as isize - 1).unwrap_or(i16::MAX);
            self.insns[at] = self.insns[at].with_offset(offset);
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{self, R0};

    #[test]
    fn jumps_land_on_their_labels() {
        let mut asm = Assembler::default();
        let end = asm.label();
        let middle = asm.label();
        asm.jump(insn::jump_eq(R0, 0, 0), end);
        asm.jump(insn::jump(0), middle);
        asm.push(insn::mov_imm(R0, 2));
        asm.bind(middle);
        asm.push(insn::mov_imm(R0, 3));
        asm.bind(end);
        asm.push(insn::exit());
        let insns = asm.finish();
        assert_eq!(insns[0], insn::jump_eq(R0, 0, 3));
        assert_eq!(insns[1], insn::jump(1));
    }
}
