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
//! - Blocks are shared between the processes of one program image through [`SharedBlocks`]
//!   (kept with the `Program`): each shared block comes with the exact bytes it was decoded
//!   from, and a process uses it only after checking that its own memory holds those bytes,
//!   so self-modifying code, remapped text or a different image can never run a block decoded
//!   elsewhere. Only blocks whose end depends on nothing past their bytes (a normal tail) are
//!   shared.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use vm_exec_core::decode::decode;
use vm_exec_core::inst::{Inst, Op};
use vm_exec_core::memory::{
    AccessKind, AddressSpace, Invalidations, MemFault, PAGE_SHIFT, PERM_EXEC,
};
use vm_exec_core::process::Process;

/// Most instructions in one block.
pub const MAX_BLOCK_INSTS: usize = 64;
// Block lengths fit the direct-mapped table's `u16`.
const _: () = assert!(MAX_BLOCK_INSTS <= u16::MAX as usize);

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
#[derive(Debug, PartialEq, Eq)]
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

/// True for instructions that end a block: [`Op::ends_block`] (the classification lives next
/// to `Op`; this name stays for the JIT, which cuts blocks the same way).
pub fn is_terminator(op: Op) -> bool {
    op.ends_block()
}

/// Decodes the block starting at `pc`. Never fails: problems become the block's [`Tail`].
pub fn decode_block(mem: &AddressSpace, pc: u64) -> Block {
    decode_block_with(pc, |at| mem.fetch_inst(at))
}

/// Decodes the block starting at `pc`, fetching each instruction with `fetch`.
fn decode_block_with(pc: u64, fetch: impl Fn(u64) -> Result<u32, MemFault>) -> Block {
    // Decoded on the stack, then allocated once at its exact size.
    let mut buf = [Inst::new(Op::Lui, 4); MAX_BLOCK_INSTS];
    let mut n = 0;
    let mut at = pc;
    let mut tail = Tail::Normal;
    while n < MAX_BLOCK_INSTS {
        let bits = match fetch(at) {
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
        buf[n] = inst;
        n += 1;
        if is_terminator(inst.op) {
            break;
        }
    }
    Block { start: pc, insts: Box::from(&buf[..n]), end: at, tail }
}

/// Most bytes one block is decoded from.
const MAX_BLOCK_BYTES: usize = MAX_BLOCK_INSTS * 4;

/// Decodes the block at `pc` from a copy of the guest bytes it can come from (up to
/// [`MAX_BLOCK_BYTES`], not past the end of `pc`'s page), so the block and the bytes it was
/// decoded from are consistent by construction, even if another thread rewrites the code
/// meanwhile. `None` when the copy cannot be taken or the block runs past it (it crosses
/// into the next page): the caller decodes from memory instead.
fn decode_block_snapshot(mem: &AddressSpace, pc: u64) -> Option<(Block, Box<[u8]>)> {
    let page_end = (pc | ((1u64 << PAGE_SHIFT) - 1)).checked_add(1)?;
    let len = (page_end - pc).min(MAX_BLOCK_BYTES as u64) as usize;
    let mut bytes = [0u8; MAX_BLOCK_BYTES];
    mem.read_into(pc, &mut bytes[..len], PERM_EXEC, AccessKind::Execute).ok()?;
    let ran_out = std::cell::Cell::new(false);
    let block = decode_block_with(pc, |at| {
        let off = at.wrapping_sub(pc) as usize;
        let half = |o: usize| match bytes[..len].get(o..o + 2) {
            Some(h) => Ok(u16::from_le_bytes([h[0], h[1]]) as u32),
            None => {
                ran_out.set(true);
                Err(MemFault { addr: at, kind: AccessKind::Execute })
            }
        };
        let lo = half(off)?;
        if lo & 3 != 3 {
            return Ok(lo);
        }
        Ok(lo | half(off + 2)? << 16)
    });
    if ran_out.get() {
        return None;
    }
    let used = (block.end - block.start) as usize;
    Some((block, Box::from(&bytes[..used])))
}

/// Multiplicative hash for guest pcs and page numbers (keys chosen by the guest only as
/// addresses of its own code, so no flooding concern beyond its own slowdown).
#[derive(Default, Clone, Copy)]
pub struct PcHasher(u64);

impl Hasher for PcHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A hash map keyed by guest pc or page number.
pub type PcMap<V> = HashMap<u64, V, BuildHasherDefault<PcHasher>>;

const FAST_BITS: u32 = 15;
const FAST_SIZE: usize = 1 << FAST_BITS;

#[inline(always)]
fn fast_slot(pc: u64) -> usize {
    ((pc >> 1) as usize ^ (pc >> (FAST_BITS + 1)) as usize) & (FAST_SIZE - 1)
}

/// A block of the cache with the number of times a tiered run reached it, as last written
/// back from the direct-mapped table.
struct Cached {
    block: Arc<Block>,
    count: u32,
}

/// One slot of the direct-mapped table: what the dispatch loop needs of a block without
/// touching the block itself (one cache miss less per block on cold code).
#[derive(Clone, Copy)]
pub struct FastEntry {
    /// Guest pc of the block (meaningless in an empty slot, whose block pointer is null).
    pub pc: u64,
    block: *const Block,
    insts: *const Inst,
    len: u16,
    /// The block's tail is [`Tail::Normal`].
    pub normal_tail: bool,
    /// Times a tiered run reached the block (the hybrid engine's hotness counter); the
    /// authoritative count while the block sits in the table.
    pub count: u32,
}

impl FastEntry {
    /// The entry of `block` (at `pc`) with hotness `count`.
    fn of(pc: u64, block: &Arc<Block>, count: u32) -> FastEntry {
        FastEntry {
            pc,
            block: Arc::as_ptr(block),
            insts: block.insts.as_ptr(),
            // At most MAX_BLOCK_INSTS.
            len: block.insts.len() as u16,
            normal_tail: block.tail == Tail::Normal,
            count,
        }
    }

    /// The block's instructions.
    #[inline(always)]
    pub fn insts(&self) -> &[Inst] {
        // SAFETY: a non-empty entry describes a live block's instruction slice (see
        // `BlockCache`'s invariant), which does not change while the block lives; the borrow of
        // the entry ties the slice to the cache borrow it came from.
        unsafe { std::slice::from_raw_parts(self.insts, self.len as usize) }
    }

    /// The block.
    #[inline(always)]
    pub fn block(&self) -> &Block {
        // SAFETY: as for `insts`.
        unsafe { &*self.block }
    }
}

/// An empty direct-mapped entry.
const EMPTY: FastEntry = FastEntry {
    pc: 0,
    block: std::ptr::null(),
    insts: std::ptr::null(),
    len: 0,
    normal_tail: false,
    count: 0,
};

/// A table of empty entries. Empty is all zero bits (a null block pointer marks it), so the
/// table comes from zeroed memory the host maps lazily: a process that runs little code
/// touches little of it.
fn empty_fast_table() -> Box<[FastEntry]> {
    let Ok(layout) = std::alloc::Layout::array::<FastEntry>(FAST_SIZE) else {
        return vec![EMPTY; FAST_SIZE].into_boxed_slice();
    };
    // SAFETY: the layout is that of `[FastEntry; FAST_SIZE]` (non-zero size); all-zero bits
    // are a valid `FastEntry` (integers zero, pointers null, `false`), equal to `EMPTY`; the
    // box frees the allocation with the same layout (that of a `FAST_SIZE` slice).
    unsafe {
        let p = std::alloc::alloc_zeroed(layout).cast::<FastEntry>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, FAST_SIZE))
    }
}

/// Most blocks one program image shares; past it, processes keep new blocks to themselves.
const MAX_SHARED_BLOCKS: usize = 1 << 20;

/// A block as shared between processes: the decoding and the bytes it came from.
struct SharedBlock {
    block: Arc<Block>,
    bytes: Box<[u8]>,
}

/// Shards of [`SharedBlocks`]: vCPUs looking up different pcs rarely touch the same lock.
const SHARDS: usize = 64;

/// The blocks decoded by every process of one program image (see the module docs). Get the
/// one of a program with `program.image_cache(SharedBlocks::default)`.
pub struct SharedBlocks {
    shards: Box<[RwLock<PcMap<SharedBlock>>]>,
}

impl Default for SharedBlocks {
    fn default() -> Self {
        SharedBlocks { shards: (0..SHARDS).map(|_| RwLock::default()).collect() }
    }
}

impl SharedBlocks {
    fn shard(&self, pc: u64) -> &RwLock<PcMap<SharedBlock>> {
        &self.shards[((pc >> 1) as usize ^ (pc >> 7) as usize) % SHARDS]
    }

    /// Number of blocks shared.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().map_or(0, |m| m.len())).sum()
    }

    /// True when nothing is shared yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shared block at `pc` if `mem` holds exactly the bytes it was decoded from.
    fn get(&self, mem: &AddressSpace, pc: u64) -> Option<Arc<Block>> {
        let map = self.shard(pc).read().ok()?;
        let e = map.get(&pc)?;
        let mut buf = [0u8; MAX_BLOCK_BYTES];
        let here = buf.get_mut(..e.bytes.len())?;
        mem.read_into(pc, here, PERM_EXEC, AccessKind::Execute).ok()?;
        (*here == *e.bytes).then(|| e.block.clone())
    }

    /// Shares `block`, decoded from exactly `bytes` (see [`decode_block_snapshot`]), if its
    /// tail is normal.
    fn insert(&self, block: &Arc<Block>, bytes: Box<[u8]>) {
        if block.tail != Tail::Normal || block.end <= block.start {
            return;
        }
        let Ok(mut map) = self.shard(block.start).write() else { return };
        if map.len() < MAX_SHARED_BLOCKS / SHARDS {
            map.entry(block.start).or_insert(SharedBlock { block: block.clone(), bytes });
        }
    }

    /// Offers a block a process just decoded from `mem`. It is shared only with a normal tail
    /// and when decoding a copy of its bytes gives the same block (so that the pair is
    /// consistent even if another thread was rewriting the code meanwhile).
    fn offer(&self, mem: &AddressSpace, block: &Arc<Block>) {
        if block.tail != Tail::Normal || block.end <= block.start {
            return;
        }
        let len = block.end - block.start;
        let mut bytes = vec![0u8; len as usize].into_boxed_slice();
        if mem.read_into(block.start, &mut bytes, PERM_EXEC, AccessKind::Execute).is_err() {
            return;
        }
        let again = decode_block_with(block.start, |at| {
            let off = at.wrapping_sub(block.start) as usize;
            let lo =
                bytes.get(off..off + 2).ok_or(MemFault { addr: at, kind: AccessKind::Execute })?;
            let lo = u16::from_le_bytes([lo[0], lo[1]]) as u32;
            if lo & 3 != 3 {
                return Ok(lo);
            }
            let hi = bytes
                .get(off + 2..off + 4)
                .ok_or(MemFault { addr: at, kind: AccessKind::Execute })?;
            Ok(lo | (u16::from_le_bytes([hi[0], hi[1]]) as u32) << 16)
        });
        if again != **block {
            return;
        }
        let Ok(mut map) = self.shard(block.start).write() else { return };
        if map.len() < MAX_SHARED_BLOCKS / SHARDS {
            map.entry(block.start).or_insert(SharedBlock { block: block.clone(), bytes });
        }
    }
}

/// The block at `pc` as `mem` holds it: one of `shared` when `mem` holds the bytes it was
/// decoded from (the flag is then true), else freshly decoded, offered to `shared`, and the
/// decoding time added to `decode_nanos`. Every engine that decodes guest code goes through
/// this, so the processes of one image decode each block once.
pub fn fetch_block(
    shared: Option<&SharedBlocks>,
    mem: &AddressSpace,
    pc: u64,
    decode_nanos: &mut u64,
) -> (Arc<Block>, bool) {
    if let Some(b) = shared.and_then(|s| s.get(mem, pc)) {
        return (b, true);
    }
    let t0 = Instant::now();
    if let Some((block, bytes)) = decode_block_snapshot(mem, pc) {
        let b = Arc::new(block);
        *decode_nanos += t0.elapsed().as_nanos() as u64;
        if let Some(s) = shared {
            s.insert(&b, bytes);
        }
        return (b, false);
    }
    let b = Arc::new(decode_block(mem, pc));
    *decode_nanos += t0.elapsed().as_nanos() as u64;
    if let Some(s) = shared {
        s.offer(mem, &b);
    }
    (b, false)
}

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
    /// Misses served by a block another process of the same image decoded.
    pub shared_hits: u64,
}

/// All decoded blocks of one address space.
///
/// Ownership: `blocks` holds every live block (behind an `Arc`, so its address and that of
/// its instructions are stable, and possibly shared with other processes through
/// [`SharedBlocks`], which never changes a block). The direct-mapped table `fast` caches a
/// [`FastEntry`] (pointers to the block and its instructions, and the hotness count) per
/// block; an entry can only sit in the slot of its own start pc, and removing or flushing a
/// block clears that slot first, so every non-empty entry of `fast` refers to a block
/// `blocks` keeps alive. An entry's count is written back to `blocks` when another block
/// takes its slot.
pub struct BlockCache {
    blocks: PcMap<Cached>,
    fast: Box<[FastEntry]>,
    by_page: PcMap<Vec<u64>>,
    decoded_insts: usize,
    limit_insts: usize,
    /// Position in the address space's invalidation log (see [`BlockCache::sync`]).
    seen_generation: u64,
    /// [`AddressSpace::id`] of the space the blocks were decoded from.
    space: u64,
    /// The blocks of the program image, shared with its other processes.
    shared: Option<Arc<SharedBlocks>>,
    /// Counters since creation.
    pub counters: CacheCounters,
}

// SAFETY: the raw pointers in `fast` point into blocks that `blocks` of the same value keeps
// alive (shared blocks are immutable and `Sync`); moving the cache to another thread moves
// those owners with them.
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
            blocks: PcMap::default(),
            fast: empty_fast_table(),
            by_page: PcMap::default(),
            decoded_insts: 0,
            limit_insts,
            seen_generation: 0,
            space: 0,
            shared: None,
            counters: CacheCounters::default(),
        }
    }

    /// Binds the cache to `process`: a different address space than before drops every
    /// block, and blocks are shared with the other processes of its program image.
    #[inline]
    pub fn attach(&mut self, process: &Process) {
        if process.mem.id() != self.space || self.shared.is_none() {
            self.sync_slow(&process.mem);
            self.shared = Some(process.program.image_cache(SharedBlocks::default));
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
        self.lookup_entry(mem, pc).block()
    }

    /// The direct-mapped entry of the block starting at `pc` (decoding the block on a miss),
    /// whose hotness count the caller may update.
    /// The entry is never empty: `lookup_slow` always fills the slot.
    #[inline(always)]
    pub fn lookup_entry(&mut self, mem: &AddressSpace, pc: u64) -> &mut FastEntry {
        let slot = fast_slot(pc);
        let e = &self.fast[slot];
        if e.pc != pc || e.block.is_null() {
            self.lookup_slow(mem, pc);
        }
        &mut self.fast[slot]
    }

    /// Fills the direct-mapped slot of `pc` with its block, decoding it if needed.
    #[inline(never)]
    fn lookup_slow(&mut self, mem: &AddressSpace, pc: u64) {
        let slot = fast_slot(pc);
        let old = self.fast[slot];
        if !old.block.is_null() {
            if let Some(c) = self.blocks.get_mut(&old.pc) {
                c.count = old.count;
            }
            self.fast[slot] = EMPTY;
        }
        let entry = match self.blocks.get(&pc) {
            Some(c) => {
                self.counters.hits += 1;
                FastEntry::of(pc, &c.block, c.count)
            }
            None => self.decode_into(mem, pc),
        };
        self.fast[slot] = entry;
    }

    /// Decodes (or takes from the shared blocks) the block at `pc` and adds it to the cache;
    /// returns its direct-mapped entry.
    fn decode_into(&mut self, mem: &AddressSpace, pc: u64) -> FastEntry {
        self.counters.misses += 1;
        if self.decoded_insts >= self.limit_insts {
            self.flush();
        }
        let (block, shared) =
            fetch_block(self.shared.as_deref(), mem, pc, &mut self.counters.decode_nanos);
        self.counters.shared_hits += u64::from(shared);
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
        let entry = FastEntry::of(pc, &block, 0);
        self.blocks.insert(pc, Cached { block, count: 0 });
        entry
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
        let Some(entry) = self.blocks.remove(&pc) else { return };
        self.counters.invalidations += 1;
        self.decoded_insts -= entry.block.insts.len().max(1);
        let slot = fast_slot(pc);
        if self.fast[slot].pc == pc {
            self.fast[slot] = EMPTY;
        }
    }

    /// Drops every block.
    pub fn flush(&mut self) {
        self.counters.invalidations += self.blocks.len() as u64;
        if !self.blocks.is_empty() {
            self.fast = empty_fast_table();
        }
        self.blocks.clear();
        self.by_page.clear();
        self.decoded_insts = 0;
    }
}
