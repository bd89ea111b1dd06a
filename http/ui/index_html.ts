/**
 * The dashboard's page. Kept as a string in a module so that `deno compile` puts it in the
 * binary; it loads only /ui/style.css and /ui/app.js from the same node.
 */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>raftkv dashboard</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/ui/style.css">
  <script src="/ui/app.js" defer></script>
</head>
<body>
  <header class="topbar">
    <div class="brand">
      <span class="logo">raftkv</span>
      <span class="subtitle">cluster dashboard</span>
    </div>
    <div class="meta">
      <span>cluster <code id="cluster-id">…</code></span>
      <span>served by <code id="served-by">…</code></span>
      <span id="live" class="live" data-state="connecting">
        <span class="dot"></span><span id="live-text">connecting…</span>
      </span>
    </div>
  </header>

  <main>
    <section class="cards" aria-label="Summary">
      <div class="card">
        <div class="label">Leader</div>
        <div class="value" id="leader-id">—</div>
        <div class="hint" id="leader-url">&nbsp;</div>
      </div>
      <div class="card">
        <div class="label">Term</div>
        <div class="value" id="term">—</div>
        <div class="hint">the leader's term</div>
      </div>
      <div class="card">
        <div class="label">Commit index</div>
        <div class="value" id="commit-index">—</div>
        <div class="hint">on the leader</div>
      </div>
      <div class="card">
        <div class="label">Members up</div>
        <div class="value" id="members-up">—</div>
        <div class="hint" id="quorum">&nbsp;</div>
      </div>
      <div class="card">
        <div class="label">Keys</div>
        <div class="value" id="keys">—</div>
        <div class="hint">in the leader's store</div>
      </div>
    </section>

    <section class="panel" aria-labelledby="members-title">
      <div class="panel-head">
        <h2 id="members-title">Members</h2>
        <span class="note">Lag and last contact are the leader's view: its last log index minus
          the member's match index, and the time since the member last answered it.</span>
      </div>
      <table id="members">
        <thead>
          <tr>
            <th>Member</th>
            <th>Role</th>
            <th class="num">Term</th>
            <th class="num">Commit</th>
            <th class="num">Applied</th>
            <th class="num">Last log</th>
            <th>Lag (entries)</th>
            <th class="num">Last contact</th>
            <th>Status</th>
          </tr>
        </thead>
        <tbody id="members-body">
          <tr class="placeholder"><td colspan="9">Loading the cluster…</td></tr>
        </tbody>
      </table>
    </section>

    <section class="panel" aria-labelledby="kv-title">
      <div class="panel-head">
        <h2 id="kv-title">Key browser</h2>
        <span class="note">Reads and writes go through this node's /get, /set and /delete;
          a follower relays them to the leader.</span>
      </div>
      <div class="kv">
        <form id="kv-form" class="kv-form" autocomplete="off">
          <label>Key <input id="kv-key" name="key" maxlength="1024" required
            placeholder="e.g. user:42"></label>
          <label>Value <input id="kv-value" name="value" placeholder="value to set"></label>
          <div class="buttons">
            <button type="submit" id="kv-get" data-op="get">Get</button>
            <button type="button" id="kv-set" data-op="set" class="primary">Set</button>
            <button type="button" id="kv-delete" data-op="delete" class="danger">Delete</button>
          </div>
          <div id="kv-result" class="result" data-state="idle" role="status">
            Enter a key, then Get, Set or Delete.
          </div>
        </form>
        <div class="history">
          <h3>Recent operations</h3>
          <ol id="kv-history"><li class="empty">None yet.</li></ol>
        </div>
      </div>
    </section>
  </main>
</body>
</html>
`;
