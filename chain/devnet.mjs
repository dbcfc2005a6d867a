// The local devnet Athena trades against in tests and demos, on a running anvil:
//
//   node chain/devnet.mjs deploy --rpc URL [--out FILE]
//       deploys five tokens (USDC and USDbC with 6 decimals, DAI, AERO, WETH9), the UniswapV2
//       factory and router from their npm artifacts and six pairs with liquidity, then
//       Aerodrome's pool factory (compiled from source) with a stable USDC/DAI and a volatile
//       AERO/USDC pool, and Aerodrome's factory registry and router; writes the addresses as
//       JSON (FILE, or stdout). On a fresh anvil the addresses are always the same (the
//       deployer's nonces and CREATE2 fix them), which config/examples/local-anvil.toml uses.
//   node chain/devnet.mjs trade --rpc URL --deployment FILE [--every MS] [--seed N] [--count N]
//       a trader (anvil's second account) swaps a random 0.1–1% of a random pool's reserve every
//       MS milliseconds (default 2000), in a random direction, so prices move and volume accrues;
//       a stable pool a quarter of that, back toward its peg (as arbitrage keeps it).
//
// Only the test toolchain runs this (node and the packages pinned by chain/package-lock.json);
// the product never does.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createPublicClient, createWalletClient, http, maxUint256, parseAbi, parseUnits } from "viem";
import { foundry } from "viem/chains";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** anvil's first two development accounts (unlocked on the node). */
const DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const TRADER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/** anvil's third development account: the agent's wallet (config/examples/local-anvil.toml
 * signs with its key), given AGENT_USDC of USDC (and anvil's 10,000 ETH for gas). */
const AGENT = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const AGENT_USDC = "10000";

/** USD prices the pools are seeded at. */
const PRICES = { WETH: 3000, AERO: 1.2, USDC: 1, DAI: 1, USDbC: 1 };
const TOKENS = [
  { symbol: "USDC", name: "USD Coin", decimals: 6 },
  { symbol: "USDbC", name: "USD Base Coin", decimals: 6 },
  { symbol: "DAI", name: "Dai Stablecoin", decimals: 18 },
  { symbol: "AERO", name: "Aerodrome", decimals: 18 },
];
/** The six pools of the simulator, with their seeded TVL (USD). */
const POOLS = [
  { name: "WETH/USDC", tvl: 4_000_000, stable: false },
  { name: "WETH/DAI", tvl: 1_500_000, stable: false },
  { name: "AERO/USDC", tvl: 800_000, stable: false },
  { name: "AERO/WETH", tvl: 600_000, stable: false },
  { name: "USDC/DAI", tvl: 3_000_000, stable: true },
  { name: "USDC/USDbC", tvl: 1_200_000, stable: true },
];

function args() {
  const [cmd, ...rest] = process.argv.slice(2);
  const opts = {};
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith("--") || rest[i + 1] === undefined) usage(`bad argument ${rest[i]}`);
    opts[rest[i].slice(2)] = rest[i + 1];
  }
  if (!opts.rpc) usage("--rpc URL is required");
  return { cmd, opts };
}

function usage(why) {
  console.error(`devnet: ${why}\nusage: devnet.mjs deploy --rpc URL [--out FILE] | trade --rpc URL --deployment FILE [--every MS] [--seed N] [--count N]`);
  process.exit(2);
}

function artifact(path) {
  const a = JSON.parse(readFileSync(require.resolve(path), "utf8"));
  const code = a.bytecode ?? a.evm?.bytecode?.object;
  return { abi: a.abi, bytecode: code.startsWith("0x") ? code : `0x${code}` };
}

/**
 * Compiles `files` offline with solcjs; `path` maps an import to a file. Returns each named
 * contract's ABI and bytecode.
 */
function compile(files, path, names) {
  const solc = require("solc");
  const sources = Object.fromEntries(files.map((f) => [f, { content: readFileSync(path(f), "utf8") }]));
  const input = {
    language: "Solidity",
    sources,
    settings: { optimizer: { enabled: true, runs: 200 }, outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } } },
  };
  const findImports = (p) => {
    try {
      return { contents: readFileSync(path(p), "utf8") };
    } catch (e) {
      return { error: `${p}: ${e.message}` };
    }
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (out.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join("\n"));
  return Object.fromEntries(
    Object.entries(names).map(([name, file]) => {
      const c = out.contracts[file][name];
      return [name, { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` }];
    }),
  );
}

/** TestToken.sol, with OpenZeppelin 4.9.6's sources. */
function testToken() {
  const path = (p) => (p === "TestToken.sol" ? join(here, "contracts/TestToken.sol") : require.resolve(p));
  return compile(["TestToken.sol"], path, { TestToken: "TestToken.sol" }).TestToken;
}

/**
 * Aerodrome's Pool, PoolFactory, FactoryRegistry and Router (unpacked by scripts/anvil.sh from
 * the npm package sphere-mezo-solidity-files), with OpenZeppelin 5's sources, which they are
 * written for.
 */
function aerodrome() {
  const root = join(here, "node_modules/.aerodrome/");
  const path = (p) =>
    p.startsWith("aerodrome/")
      ? join(root, p.slice("aerodrome/".length))
      : require.resolve(p.replace("@openzeppelin/contracts/", "@openzeppelin/contracts-v5/"));
  const files = {
    Pool: "aerodrome/contracts/Pool.sol",
    PoolFactory: "aerodrome/contracts/factories/PoolFactory.sol",
    FactoryRegistry: "aerodrome/contracts/factories/FactoryRegistry.sol",
    Router: "aerodrome/contracts/Router.sol",
  };
  return compile(Object.values(files), path, files);
}

/** The two Solidly (Aerodrome) pools, deployed after the UniswapV2 ones. */
const SOLIDLY_POOLS = [
  { name: "USDC/DAI", tvl: 2_000_000, stable: true },
  { name: "AERO/USDC", tvl: 700_000, stable: false },
];

const SOLIDLY_POOL_ABI = parseAbi([
  "function token0() view returns (address)",
  "function token1() view returns (address)",
  "function getReserves() view returns (uint256, uint256, uint256)",
  "function getAmountOut(uint256 amountIn, address tokenIn) view returns (uint256)",
  "function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes data)",
  "function mint(address to) returns (uint256)",
]);

function clients(rpc, account) {
  const transport = http(rpc);
  return {
    pub: createPublicClient({ chain: foundry, transport }),
    wallet: createWalletClient({ chain: foundry, transport, account }),
  };
}

async function mined(pub, hash) {
  const r = await pub.waitForTransactionReceipt({ hash, pollingInterval: 50 });
  if (r.status !== "success") throw new Error(`transaction ${hash} reverted`);
  return r;
}

async function deploy(rpc) {
  const { pub, wallet } = clients(rpc, DEPLOYER);
  const send = async (req) => mined(pub, await wallet.writeContract(req));
  const create = async (art, args) => (await mined(pub, await wallet.deployContract({ ...art, args }))).contractAddress;

  const erc20 = testToken();
  const tokens = {};
  for (const t of TOKENS) {
    tokens[t.symbol] = { address: await create(erc20, [t.name, t.symbol, t.decimals, parseUnits("1000000000", t.decimals)]), decimals: t.decimals };
  }
  const weth9 = artifact("@uniswap/v2-periphery/build/WETH9.json");
  tokens.WETH = { address: await create(weth9, []), decimals: 18 };
  await send({ address: tokens.WETH.address, abi: weth9.abi, functionName: "deposit", value: parseUnits("5000", 18) });

  const factoryArt = artifact("@uniswap/v2-core/build/UniswapV2Factory.json");
  const routerArt = artifact("@uniswap/v2-periphery/build/UniswapV2Router02.json");
  const factory = await create(factoryArt, [DEPLOYER]);
  const router = await create(routerArt, [factory, tokens.WETH.address]);

  for (const t of Object.values(tokens)) {
    await send({ address: t.address, abi: erc20.abi, functionName: "approve", args: [router, maxUint256] });
  }
  const pools = [];
  for (const p of POOLS) {
    const [a, b] = p.name.split("/");
    const amount = (sym) => parseUnits(((p.tvl / 2) / PRICES[sym]).toFixed(6), tokens[sym].decimals);
    await send({
      address: router, abi: routerArt.abi, functionName: "addLiquidity",
      args: [tokens[a].address, tokens[b].address, amount(a), amount(b), 0n, 0n, DEPLOYER, 2n ** 40n],
    });
    const pair = await pub.readContract({ address: factory, abi: factoryArt.abi, functionName: "getPair", args: [tokens[a].address, tokens[b].address] });
    pools.push({ name: p.name, address: pair, stable: p.stable, kind: "uniswap_v2" });
  }
  // The trader's float: a tenth of what the deployer holds of each token.
  for (const t of Object.values(tokens)) {
    const held = await pub.readContract({ address: t.address, abi: erc20.abi, functionName: "balanceOf", args: [DEPLOYER] });
    await send({ address: t.address, abi: erc20.abi, functionName: "transfer", args: [TRADER, held / 10n] });
  }
  // Aerodrome: the pool implementation, its factory (fees 0.05% stable, 0.30% volatile), and
  // two pools funded by a transfer and a mint (no router needed).
  const aero = aerodrome();
  const solidlyFactory = await create(aero.PoolFactory, [await create(aero.Pool, [])]);
  const createPool = aero.PoolFactory.abi.filter(
    (f) => f.name !== "createPool" || f.inputs[2].type === "bool",
  );
  for (const p of SOLIDLY_POOLS) {
    const [a, b] = p.name.split("/");
    await send({
      address: solidlyFactory, abi: createPool, functionName: "createPool",
      args: [tokens[a].address, tokens[b].address, p.stable],
    });
    const pool = await pub.readContract({
      address: solidlyFactory, abi: aero.PoolFactory.abi, functionName: "getPool",
      args: [tokens[a].address, tokens[b].address, p.stable],
    });
    for (const sym of [a, b]) {
      const amount = parseUnits(((p.tvl / 2) / PRICES[sym]).toFixed(6), tokens[sym].decimals);
      await send({ address: tokens[sym].address, abi: erc20.abi, functionName: "transfer", args: [pool, amount] });
    }
    await send({ address: pool, abi: SOLIDLY_POOL_ABI, functionName: "mint", args: [DEPLOYER] });
    pools.push({ name: p.name, address: pool, stable: p.stable, kind: "solidly" });
  }
  // After the pools, so that every address above stays where it always was.
  await send({
    address: tokens.USDC.address, abi: erc20.abi, functionName: "transfer",
    args: [AGENT, parseUnits(AGENT_USDC, tokens.USDC.decimals)],
  });
  // Aerodrome's router, whose registry approves the pool factory above. Gauges, votes and
  // rewards are not deployed: their factories and the voter are placeholder addresses that
  // swaps and liquidity never call.
  const placeholder = (n) => `0x${n.toString(16).padStart(40, "0")}`;
  const registry = await create(aero.FactoryRegistry, [solidlyFactory, placeholder(0xa1), placeholder(0xa2), placeholder(0xa3)]);
  const solidlyRouter = await create(aero.Router, [placeholder(0xa4), registry, solidlyFactory, placeholder(0xa5), tokens.WETH.address]);
  const addr = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v.address]));
  return {
    chain_id: await pub.getChainId(), factory, router, solidly_factory: solidlyFactory,
    solidly_router: solidlyRouter, weth: tokens.WETH.address, tokens: addr(tokens), pools, agent: AGENT,
  };
}

/** Decimals of the devnet's tokens. */
function decimalsOf(deployment, token) {
  const symbol = Object.keys(deployment.tokens).find((k) => deployment.tokens[k].toLowerCase() === token.toLowerCase());
  return TOKENS.find((t) => t.symbol === symbol)?.decimals ?? 18;
}

/** Whether a stable pool holds less of token0 than of token1 (in whole tokens). */
function stableBelowPeg(deployment, t0, t1, r0, r1) {
  const whole = (r, t) => Number(r) / 10 ** decimalsOf(deployment, t);
  return whole(r0, t0) < whole(r1, t1);
}

/** A small deterministic PRNG (mulberry32), so a seed replays the same trades. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function trade(rpc, deployment, every, seed, count) {
  const { pub, wallet } = clients(rpc, TRADER);
  const pairAbi = artifact("@uniswap/v2-core/build/UniswapV2Pair.json").abi;
  const erc20Abi = artifact("@openzeppelin/contracts/build/contracts/IERC20.json").abi;
  const routerAbi = artifact("@uniswap/v2-periphery/build/UniswapV2Router02.json").abi;
  const send = async (req) => mined(pub, await wallet.writeContract(req));
  for (const t of Object.values(deployment.tokens)) {
    await send({ address: t, abi: erc20Abi, functionName: "approve", args: [deployment.router, maxUint256] });
  }
  const random = rng(seed);
  for (let n = 0; count === 0 || n < count; n++) {
    const pool = deployment.pools[Math.floor(random() * deployment.pools.length)];
    const [t0, t1] = await Promise.all([
      pub.readContract({ address: pool.address, abi: pairAbi, functionName: "token0" }),
      pub.readContract({ address: pool.address, abi: pairAbi, functionName: "token1" }),
    ]);
    const [r0, r1] = await pub.readContract({ address: pool.address, abi: pairAbi, functionName: "getReserves" });
    // A stable pool is traded back toward its peg (the side it holds less of is sold to it),
    // as arbitrage would; a volatile one in a random direction.
    const coin = random() < 0.5;
    const forward = pool.stable ? stableBelowPeg(deployment, t0, t1, r0, r1) : coin;
    const [tin, tout, rin] = forward ? [t0, t1, r0] : [t1, t0, r1];
    // 0.1–1% of the reserve, a quarter of that in a stable pool (it stays within 0.5% of peg).
    const share = (0.001 + random() * 0.009) / (pool.stable ? 4 : 1);
    const amountIn = (rin * BigInt(Math.floor(share * 1e6))) / 1_000_000n;
    if (pool.kind === "solidly") {
      // No router: pay the pool, then take what its curve gives.
      try {
        const out = await pub.readContract({ address: pool.address, abi: SOLIDLY_POOL_ABI, functionName: "getAmountOut", args: [amountIn, tin] });
        await send({ address: tin, abi: erc20Abi, functionName: "transfer", args: [pool.address, amountIn] });
        await send({
          address: pool.address, abi: SOLIDLY_POOL_ABI, functionName: "swap",
          args: [forward ? 0n : out, forward ? out : 0n, TRADER, "0x"], gas: 400_000n,
        });
        console.log(`devnet: swap ${n + 1} on ${pool.kind} ${pool.name}`);
      } catch (e) {
        console.log(`devnet: swap ${n + 1} on ${pool.kind} ${pool.name} failed: ${e.shortMessage ?? e.message}`);
      }
      await new Promise((r) => setTimeout(r, every));
      continue;
    }
    // An explicit gas limit: the first swap in a block can cost far more than eth_estimateGas
    // says. A swap that fails anyway is reported and the trader goes on.
    try {
      await send({
        address: deployment.router, abi: routerAbi, functionName: "swapExactTokensForTokens",
        args: [amountIn, 0n, [tin, tout], TRADER, 2n ** 40n], gas: 400_000n,
      });
      console.log(`devnet: swap ${n + 1} on ${pool.kind} ${pool.name}`);
    } catch (e) {
      console.log(`devnet: swap ${n + 1} on ${pool.kind} ${pool.name} failed: ${e.shortMessage ?? e.message}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

const { cmd, opts } = args();
try {
  if (cmd === "deploy") {
    const json = JSON.stringify(await deploy(opts.rpc), null, 2);
    if (opts.out) writeFileSync(opts.out, json + "\n");
    else console.log(json);
  } else if (cmd === "trade") {
    if (!opts.deployment) usage("--deployment FILE is required");
    const deployment = JSON.parse(readFileSync(opts.deployment, "utf8"));
    await trade(opts.rpc, deployment, Number(opts.every ?? 2000), Number(opts.seed ?? 1), Number(opts.count ?? 0));
  } else {
    usage(`unknown command ${cmd}`);
  }
} catch (e) {
  console.error(`devnet: ${e.shortMessage ?? e.message}`);
  process.exit(1);
}
