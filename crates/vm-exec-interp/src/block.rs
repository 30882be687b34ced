//! Pre-decoded basic blocks and the cache that holds them, keyed by guest pc.
//!
//! Invariants:
//! - A [`Block`] is the decoding of the guest bytes at `start` at the time it was decoded. Its
//!   instructions are straight-line: only the last one may change control flow. A block that
//!   stops at an undecodable or unfetchable instruction records that in [`Block::tail`], so the
//!   fault is raised only when execution actually reaches it.
//! - Every page a block's bytes come from carries the `PERM_CODE` bit in the address space and
//!   lists the block in `by_page`; a write to the page (or `fence.i`) removes the block before
//!   it can run again. Removed blocks are never reachable from `map` or the fast table.
//! - Integer destination register 0 is rewritten to 32 at decode time: the interpreter's
//!   register file has a write-only sink there, so x0 stays zero without a check per write.

use std::collections::HashMap;
use std::time::Instant;
use vm_exec_core::decode::decode;
use vm_exec_core::inst::{Inst, Op};
use vm_exec_core::memory::{AddressSpace, Invalidations, PAGE_SHIFT};

/// Most instructions in one block.
pub const MAX_BLOCK_INSTS: usize = 64;
/// Register index that swallows writes to x0.
pub const ZERO_SINK: u8 = 32;

/// How a block ends when execution runs past its last decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The last instruction transfers control, or the block reached its size limit and falls
    /// through to the next pc.
    Normal,
    /// The next instruction is not a valid RV64GC instruction (SIGILL when reached).
    Illegal,
    /// The next instruction cannot be fetched (SIGSEGV when reached).
    FetchFault(u64),
}

/// A decoded straight-line run of guest instructions.
#[derive(Debug)]
pub struct Block {
    /// Guest pc of the first instruction.
    pub start: u64,
    /// The instructions, in order.
    pub insts: Box<[Inst]>,
    /// Guest address just past the last instruction's bytes.
    pub end: u64,
    /// What happens after the last instruction.
    pub tail: Tail,
}

/// True for instructions that end a block.
pub fn is_terminator(op: Op) -> bool {
    matches!(
        op,
        Op::Jal
            | Op::Jalr
            | Op::Beq
            | Op::Bne
            | Op::Blt
            | Op::Bge
            | Op::Bltu
            | Op::Bgeu
            | Op::Ecall
            | Op::Ebreak
            | Op::FenceI
    )
}

/// Decodes the block starting at `pc`. Never fails: problems become the block's [`Tail`].
pub fn decode_block(mem: &AddressSpace, pc: u64) -> Block {
    let mut insts = Vec::with_capacity(16);
    let mut at = pc;
    let mut tail = Tail::Normal;
    while insts.len() < MAX_BLOCK_INSTS {
        let bits = match mem.fetch_inst(at) {
            Ok(b) => b,
            Err(f) => {
                tail = Tail::FetchFault(f.addr);
                break;
            }
        };
        let mut inst = match decode(bits) {
            Ok(i) => i,
            Err(_) => {
                tail = Tail::Illegal;
                break;
            }
        };
        if inst.rd == 0 && inst.op.writes_int_rd() {
            inst.rd = ZERO_SINK;
        }
        at = at.wrapping_add(inst.len as u64);
        insts.push(inst);
        if is_terminator(inst.op) {
            break;
        }
    }
    Block { start: pc, insts: insts.into_boxed_slice(), end: at, tail }
}

const FAST_BITS: u32 = 12;
const FAST_SIZE: usize = 1 << FAST_BITS;

#[inline(always)]
fn fast_slot(pc: u64) -> usize {
    ((pc >> 1) as usize ^ (pc >> (FAST_BITS + 1)) as usize) & (FAST_SIZE - 1)
}

/// An empty direct-mapped entry: no guest pc is `u64::MAX` (pcs are even).
const EMPTY: (u64, *const Block) = (u64::MAX, std::ptr::null());

/// Counters of the cache, folded into the engine's statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheCounters {
    /// Lookups served from the hash map after missing the direct-mapped table (lookups
    /// served by that table are counted by the caller, which knows how many it made).
    pub hits: u64,
    /// Lookups that decoded a block.
    pub misses: u64,
    /// Blocks dropped by invalidation or flushing.
    pub invalidations: u64,
    /// Time spent decoding.
    pub decode_nanos: u64,
}

/// All decoded blocks of one address space.
///
/// Ownership: `blocks` owns every live block (boxed, so its address is stable). The
/// direct-mapped table `fast` caches `(pc, pointer)` pairs; a block's pointer can only sit in
/// the slot of its own start pc, and removing or flushing a block clears that slot first, so
/// every non-empty pointer in `fast` refers to a live block.
pub struct BlockCache {
    blocks: HashMap<u64, Box<Block>>,
    fast: Box<[(u64, *const Block)]>,
    by_page: HashMap<u64, Vec<u64>>,
    decoded_insts: usize,
    limit_insts: usize,
    /// Position in the address space's invalidation log (see [`BlockCache::sync`]).
    seen_generation: u64,
    /// [`AddressSpace::id`] of the space the blocks were decoded from.
    space: u64,
    /// Counters since creation.
    pub counters: CacheCounters,
}

// SAFETY: the raw pointers in `fast` point into boxes owned by `blocks` of the same value;
// moving the cache to another thread moves their owner with them.
unsafe impl Send for BlockCache {}

impl Default for BlockCache {
    fn default() -> Self {
        Self::with_limit(1 << 22)
    }
}

impl BlockCache {
    /// A cache that flushes itself when it holds more than `limit_insts` decoded instructions.
    pub fn with_limit(limit_insts: usize) -> Self {
        BlockCache {
            blocks: HashMap::new(),
            fast: vec![EMPTY; FAST_SIZE].into_boxed_slice(),
            by_page: HashMap::new(),
            decoded_insts: 0,
            limit_insts,
            seen_generation: 0,
            space: 0,
            counters: CacheCounters::default(),
        }
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when no block is cached.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The block starting at `pc`, decoding it on a miss.
    #[inline(always)]
    pub fn lookup(&mut self, mem: &AddressSpace, pc: u64) -> &Block {
        let (tag, ptr) = self.fast[fast_slot(pc)];
        if tag == pc {
            // SAFETY: a non-empty entry of `fast` points to a live block owned by `blocks`
            // (see the type's invariant); the returned borrow of `self` keeps it alive.
            return unsafe { &*ptr };
        }
        self.lookup_slow(mem, pc)
    }

    #[inline(never)]
    fn lookup_slow(&mut self, mem: &AddressSpace, pc: u64) -> &Block {
        let slot = fast_slot(pc);
        if !self.blocks.contains_key(&pc) {
            self.counters.misses += 1;
            if self.decoded_insts >= self.limit_insts {
                self.flush();
            }
            let t0 = Instant::now();
            let block = decode_block(mem, pc);
            self.counters.decode_nanos += t0.elapsed().as_nanos() as u64;
            let code_end = match block.tail {
                // The faulting instruction's first bytes were read too; watch their page.
                Tail::Illegal => block.end + 2,
                _ => block.end,
            };
            if code_end > pc {
                mem.mark_code(pc, code_end - pc);
            }
            self.decoded_insts += block.insts.len().max(1);
            let last_page = (code_end.max(pc + 1) - 1) >> PAGE_SHIFT;
            for page in (pc >> PAGE_SHIFT)..=last_page {
                self.by_page.entry(page).or_default().push(pc);
            }
            self.blocks.insert(pc, Box::new(block));
        } else {
            self.counters.hits += 1;
        }
        let block: &Block = &self.blocks[&pc];
        self.fast[slot] = (pc, block as *const Block);
        block
    }

    /// Applies the code invalidations the address space logged since the last call (by any
    /// thread of the process, through any engine).
    /// A different address space than last time drops everything.
    #[inline(always)]
    pub fn sync(&mut self, mem: &AddressSpace) {
        if mem.code_generation() != self.seen_generation || mem.id() != self.space {
            self.sync_slow(mem);
        }
    }

    #[cold]
    fn sync_slow(&mut self, mem: &AddressSpace) {
        if mem.id() != self.space {
            self.flush();
            self.space = mem.id();
            self.seen_generation = mem.code_generation();
            return;
        }
        let (stale, now) = mem.invalidations_since(self.seen_generation);
        self.seen_generation = now;
        match stale {
            Invalidations::Pages(pages) => self.invalidate_pages(&pages),
            Invalidations::All => self.flush(),
        }
    }

    /// Drops every block that has bytes on one of `pages` (page-aligned addresses).
    pub fn invalidate_pages(&mut self, pages: &[u64]) {
        for &addr in pages {
            let Some(starts) = self.by_page.remove(&(addr >> PAGE_SHIFT)) else { continue };
            for pc in starts {
                self.remove(pc);
            }
        }
    }

    fn remove(&mut self, pc: u64) {
        // A block spanning two pages is listed under both; the second removal finds nothing.
        let Some(block) = self.blocks.remove(&pc) else { return };
        self.counters.invalidations += 1;
        self.decoded_insts -= block.insts.len().max(1);
        let slot = fast_slot(pc);
        if self.fast[slot].0 == pc {
            self.fast[slot] = EMPTY;
        }
    }

    /// Drops every block.
    pub fn flush(&mut self) {
        self.counters.invalidations += self.blocks.len() as u64;
        self.fast.fill(EMPTY);
        self.blocks.clear();
        self.by_page.clear();
        self.decoded_insts = 0;
    }
}
