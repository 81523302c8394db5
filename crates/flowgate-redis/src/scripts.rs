//! The server-side scripts. Each runs atomically on the server and touches only the keys of
//! one partition (one Cluster slot), all declared in `KEYS`.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, Script, Value};

/// Shared Lua helpers, prepended to the scripts that need them.
const HELPERS: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(a_ms, a_seq, b_ms, b_seq)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end
local function groups_of(stream)
  local groups = {}
  for _, raw in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local g = {}
    for i = 1, #raw, 2 do g[raw[i]] = raw[i + 1] end
    table.insert(groups, g)
  end
  return groups
end
-- Deletes the entries that every group has consumed (acknowledged, or read without
-- acknowledgement under at-most-once): never an entry some group still owes a delivery.
-- A stream without groups keeps nothing. Returns the length after.
local function trim_consumed(stream)
  local groups = groups_of(stream)
  if #groups == 0 then
    redis.call('XTRIM', stream, 'MAXLEN', 0)
    return 0
  end
  local min_ms, min_seq
  for _, g in ipairs(groups) do
    local ms, seq
    if tonumber(g['pending']) > 0 then
      ms, seq = parse_id(redis.call('XPENDING', stream, g['name'])[2])
    else
      ms, seq = parse_id(g['last-delivered-id'])
      seq = seq + 1
    end
    if min_ms == nil or before(ms, seq, min_ms, min_seq) then min_ms, min_seq = ms, seq end
  end
  redis.call('XTRIM', stream, 'MINID', string.format('%.0f-%.0f', min_ms, min_seq))
  return redis.call('XLEN', stream)
end
";

/// Publish a batch: for each entry in order, the dedupe check (exactly-once), the capacity
/// check and XADD, all in one step.
///
/// KEYS: stream, dedupe window, counters.
/// ARGV: capacity, policy (`full` | `newest` | `oldest`), window max keys, window max age
/// (ms), then per entry: idempotency key (empty: no dedupe), field count, the fields.
/// Returns `{codes, drops}`: `codes` has one letter per entry (`o` appended, `d` duplicate,
/// `f` full, `x` dropped by DropNewest), `drops` lists `entry:count` (1-based, comma
/// separated) for the entries whose publish dropped deliveries (DropOldest evictions, or the
/// groups a DropNewest entry missed).
const PUBLISH: &str = r"
local stream, dedupe, counters = KEYS[1], KEYS[2], KEYS[3]
local capacity, policy = tonumber(ARGV[1]), ARGV[2]
local max_keys, max_age = tonumber(ARGV[3]), tonumber(ARGV[4])
local now
local len = redis.call('XLEN', stream)
local codes, drops = {}, {}
local remembered = false
local i = 5
while i <= #ARGV do
  local idem, count = ARGV[i], tonumber(ARGV[i + 1])
  local first = i + 2
  i = first + count
  local reply
  if idem ~= '' then
    if now == nil then
      now = now_ms()
      redis.call('ZREMRANGEBYSCORE', dedupe, '-inf', now - max_age)
    end
    if redis.call('ZSCORE', dedupe, idem) then reply = 'd' end
  end
  local dropped = 0
  if reply == nil and len >= capacity then
    len = trim_consumed(stream)
    if len >= capacity then
      if policy == 'full' then
        reply = 'f'
      elseif policy == 'newest' then
        reply = 'x'
        dropped = #groups_of(stream)
      else
        local groups = groups_of(stream)
        local victims = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - capacity + 1)
        for _, victim in ipairs(victims) do
          local v_ms, v_seq = parse_id(victim[1])
          for _, g in ipairs(groups) do
            local ms, seq = parse_id(g['last-delivered-id'])
            if before(ms, seq, v_ms, v_seq) then dropped = dropped + 1 end
          end
          redis.call('XDEL', stream, victim[1])
        end
        len = len - #victims
      end
    end
  end
  if reply == nil then
    redis.call('XADD', stream, '*', unpack(ARGV, first, first + count - 1))
    len = len + 1
    if idem ~= '' then
      redis.call('ZADD', dedupe, now, idem)
      remembered = true
    end
    reply = 'o'
  end
  codes[#codes + 1] = reply
  if dropped > 0 then drops[#drops + 1] = #codes .. ':' .. dropped end
end
if remembered then
  local over = redis.call('ZCARD', dedupe) - max_keys
  if over > 0 then
    redis.call('ZPOPMIN', dedupe, over)
    redis.call('HINCRBY', counters, 'evicted', over)
  end
end
return {table.concat(codes), table.concat(drops, ',')}
";

/// Read for a lease holder only: checks the lease, then XREADGROUP (no BLOCK).
///
/// KEYS: lease, stream. ARGV: token, group, consumer, count, noack (`1`/`0`), start id.
/// Returns `{-1}` when the lease is not the caller's, `{1, entries}` when something was
/// read, and `{0, last id in the stream}` when nothing was.
const READ: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local args = {'XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4]}
if ARGV[5] == '1' then args[#args + 1] = 'NOACK' end
args[#args + 1] = 'STREAMS'
args[#args + 1] = KEYS[2]
args[#args + 1] = ARGV[6]
local reply = redis.call(unpack(args))
if reply and #reply[1][2] > 0 then return {1, reply[1][2]} end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then return {0, last[1][1]} end
return {0, '0-0'}
";

/// Acknowledge, fenced by the lease: nothing is acknowledged unless the caller still holds
/// the lease it read under. Exactly-once: the done marker is written in the same step.
///
/// KEYS: lease, stream, done markers. ARGV: token, group, exactly-once (`1`/`0`), window
/// max keys, window max age (ms), then pairs of (entry id, idempotency key to mark done, or
/// empty). Returns the number acknowledged, or -1 when fenced.
const ACK: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local exactly = ARGV[3] == '1'
local now = now_ms()
local acked = 0
for i = 6, #ARGV, 2 do
  acked = acked + redis.call('XACK', KEYS[2], ARGV[2], ARGV[i])
  if exactly and ARGV[i + 1] ~= '' then redis.call('ZADD', KEYS[3], now, ARGV[i + 1]) end
end
if exactly then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[5]))
  local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
  if over > 0 then redis.call('ZPOPMIN', KEYS[3], over) end
end
return acked
";

/// Takes a free lease. KEYS: lease, counters. ARGV: member id, ttl (ms), group.
/// Returns the new token `<member>/<epoch>`, the caller's own token if it holds it already
/// (renewed), or false when another member holds it.
const ACQUIRE: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  if string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. '/' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return current
  end
  return false
end
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch:' .. ARGV[3], 1)
local token = ARGV[1] .. '/' .. epoch
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
";

/// Renews a held lease. KEYS: lease. ARGV: token, ttl (ms). Returns 1, or 0 if lost.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Releases a held lease. KEYS: lease. ARGV: token. Returns 1, or 0 if it was not held.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// What a group still owes on one partition. KEYS: stream. ARGV: group, limit.
/// Returns `{pending, unread}` (unread counted up to `limit`), or `{0, 0}` when the group
/// or the stream does not exist.
const BACKLOG: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
for _, g in ipairs(groups_of(KEYS[1])) do
  if g['name'] == ARGV[1] then
    local unread = redis.call('XRANGE', KEYS[1], '(' .. g['last-delivered-id'], '+', 'COUNT', ARGV[2])
    return {tonumber(g['pending']), #unread}
  end
end
return {0, 0}
";

fn with_helpers(body: &str) -> Script {
    Script::new(&format!("{HELPERS}\n{body}"))
}

pub(crate) static PUBLISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(PUBLISH));
pub(crate) static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ));
pub(crate) static ACK_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(ACK));
pub(crate) static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
pub(crate) static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
pub(crate) static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
pub(crate) static BACKLOG_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(BACKLOG));

/// An `EVALSHA` of `script` with `keys` keys, as a plain command: the caller adds the keys and
/// arguments, which go into one buffer (a `ScriptInvocation` keeps one allocation per
/// argument and copies them all again). Send it with [`eval`].
pub(crate) fn evalsha(script: &Script, keys: usize) -> Cmd {
    let mut call = redis::cmd("EVALSHA");
    call.arg(script.get_hash()).arg(keys);
    call
}

/// Sends `call` (from [`evalsha`]); on `NOSCRIPT` (a first call, or a server that restarted)
/// loads `script` and sends it again.
pub(crate) async fn eval<C: ConnectionLike>(
    script: &Script,
    call: &Cmd,
    conn: &mut C,
) -> redis::RedisResult<Value> {
    match call.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            call.query_async(conn).await
        }
        reply => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_testkit::redis_server::RedisServer;

    async fn setup(server: &RedisServer) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(server.url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("s")
            .arg("g")
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await
            .expect("group");
        let _: String = redis::cmd("XADD")
            .arg("s")
            .arg("1-1")
            .arg("p")
            .arg("x")
            .query_async(&mut conn)
            .await
            .expect("entry");
        let () = redis::cmd("SET")
            .arg("lease")
            .arg("member/2")
            .query_async(&mut conn)
            .await
            .expect("lease");
        conn
    }

    async fn read(conn: &mut redis::aio::MultiplexedConnection, token: &str) -> Value {
        let mut call = evalsha(&READ_SCRIPT, 2);
        call.arg("lease")
            .arg("s")
            .arg(token)
            .arg("g")
            .arg("c")
            .arg(10)
            .arg("0")
            .arg(">");
        eval(&READ_SCRIPT, &call, conn).await.expect("read")
    }

    async fn ack(conn: &mut redis::aio::MultiplexedConnection, token: &str) -> i64 {
        let mut call = evalsha(&ACK_SCRIPT, 3);
        call.arg("lease")
            .arg("s")
            .arg("done")
            .arg(token)
            .arg("g")
            .arg("1")
            .arg(100)
            .arg(60_000);
        call.arg("1-1").arg("pay-1");
        let reply = eval(&ACK_SCRIPT, &call, conn).await.expect("ack");
        crate::wire::as_int(&reply).expect("a number")
    }

    async fn pending(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
        let summary: Value = redis::cmd("XPENDING")
            .arg("s")
            .arg("g")
            .query_async(conn)
            .await
            .unwrap();
        let Value::Array(parts) = summary else {
            panic!("{summary:?}")
        };
        crate::wire::as_int(&parts[0]).unwrap()
    }

    async fn marked(conn: &mut redis::aio::MultiplexedConnection) -> bool {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg("done")
            .arg("pay-1")
            .query_async(conn)
            .await
            .unwrap();
        score.is_some()
    }

    #[tokio::test]
    async fn a_member_with_an_old_epoch_can_neither_read_nor_acknowledge() {
        let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let mut conn = setup(&server).await;
        // The lease is at epoch 2; a member still holding epoch 1 lost the partition.
        assert_eq!(
            read(&mut conn, "member/1").await,
            Value::Array(vec![Value::Int(-1)])
        );
        assert_eq!(pending(&mut conn).await, 0, "the fenced read read nothing");
        let Value::Array(fresh) = read(&mut conn, "member/2").await else {
            panic!()
        };
        assert_eq!(fresh[0], Value::Int(1), "the owner reads the entry");
        assert_eq!(
            ack(&mut conn, "member/1").await,
            -1,
            "a late ack is refused"
        );
        assert_eq!(pending(&mut conn).await, 1, "and acknowledges nothing");
        assert!(!marked(&mut conn).await, "nor marks the key done");
        assert_eq!(
            ack(&mut conn, "member/2").await,
            1,
            "the owner's ack counts"
        );
        assert_eq!(pending(&mut conn).await, 0);
        assert!(
            marked(&mut conn).await,
            "with its done marker, in the same step"
        );
    }
}
