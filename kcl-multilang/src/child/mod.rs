//! Child processes: [`process`] owns one program and its pipes; [`exchange`] runs one turn of the protocol on it
//! (a message, the checkpoints the child asks for, its `status` reply).

pub(crate) mod exchange;
pub(crate) mod process;
