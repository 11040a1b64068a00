"""What a compiled network is *about*, apart from how it was traced: exact Jacobians, norms, bounds.

- :mod:`.reach`: which input entries each entry of each node can depend on, as a box of
  coordinates per entry, propagated through the nodes' index structure (no values);
- :mod:`.colouring`: the boxes -> a colouring of the Jacobian's columns (or rows) on a lattice,
  the seed matrix, and the scatter of the compressed product back into CSR;
- :mod:`.compressed`: ``J S`` (or ``S^T J``) as one batch of Jacobian-vector (vector-Jacobian)
  products through the model's own torch operations;
- :mod:`.packed`: the same for stencil networks, each colour's tangents packed into its cones;
- :mod:`.chain`: the Jacobian as the product of the nodes' sparse matrices, and linear maps;
- :mod:`.cost`: the methods' cost model: each node's multiply-adds, the rates, what a block holds;
- :mod:`.jacobian`: :func:`jacobian` and :func:`jacobian_plan`: the method chosen by its cost;
- :mod:`.lipschitz`: node norms and the product bound (norms composed along the graph);
- :mod:`.certify`: the windowed bound (activations averaged over windows of the graph);
- :mod:`.lipsdp`: LipSDP on the sparse matrices, verified in float64;
- :mod:`.bounds`: the certificates by name (``'auto'`` among them) and :func:`lipschitz_report`.
"""
