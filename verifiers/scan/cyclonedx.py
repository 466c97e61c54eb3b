"""An image inventory as a CycloneDX 1.5 JSON document (``gatekeeper sbom``, the admin API).

Built with cyclonedx-python-lib, so the output is validated against the schema the library
ships rather than hand-assembled. Each component carries its layer and path as properties
(``gatekeeper:layer``, ``gatekeeper:path``), the Debian source package as ``gatekeeper:source``.
The image (the BOM's subject) depends on every component it holds, so the dependency graph is
complete (without it the library warns on every document, on the stderr of every run).
"""

from __future__ import annotations

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot5
from packageurl import PackageURL

from verifiers.scan.model import ImageInventory, Package


def _component(index: int, package: Package) -> Component:
    properties = [
        Property(name="gatekeeper:layer", value=package.layer),
        Property(name="gatekeeper:path", value=package.path),
    ]
    if package.source_name and package.source_name != package.name:
        source = package.source_name
        if package.source_version and package.source_version != package.version:
            source += f" ({package.source_version})"
        properties.append(Property(name="gatekeeper:source", value=source))
    return Component(
        type=ComponentType.LIBRARY,
        name=package.name,
        version=package.version,
        purl=PackageURL.from_string(package.purl) if package.purl else None,
        bom_ref=f"pkg-{index}:{package.purl or package.name}",
        properties=properties,
    )


def to_cyclonedx(repository: str, digest: str, inventory: ImageInventory) -> str:
    """The SBOM as JSON text."""
    bom = Bom()
    image = Component(type=ComponentType.CONTAINER, name=repository, version=digest, bom_ref=digest)
    bom.metadata.component = image
    held: list[Component] = []
    os_release = inventory.os_release
    if os_release is not None:
        held.append(
            Component(
                type=ComponentType.OPERATING_SYSTEM,
                name=os_release.id,
                version=os_release.version_id or None,
                description=os_release.pretty_name or None,
                bom_ref=f"os:{os_release.id}",
            )
        )
    held += (_component(index, package) for index, package in enumerate(inventory.packages))
    for component in held:
        bom.components.add(component)
    bom.register_dependency(image, held)
    return str(JsonV1Dot5(bom).output_as_string(indent=2))
