// SPDX-License-Identifier: Apache-2.0
// A plain ERC20 with its own decimals (USDC has 6), for the local devnet only: the whole supply
// goes to the deployer. OpenZeppelin 4.9.6's ERC20 fixes decimals at 18, hence this file.
pragma solidity ^0.8.20;

import "@openzeppelin/contracts/token/ERC20/ERC20.sol";

contract TestToken is ERC20 {
    uint8 private immutable _decimals;

    constructor(string memory name_, string memory symbol_, uint8 decimals_, uint256 supply)
        ERC20(name_, symbol_)
    {
        _decimals = decimals_;
        _mint(msg.sender, supply);
    }

    function decimals() public view override returns (uint8) {
        return _decimals;
    }
}
