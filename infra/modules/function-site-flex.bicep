// The function app on Flex Consumption (FC1), running the hub2lake custom handler.
// App settings are applied by function-app.bicep. Deployments go through the
// platform's publish endpoint with an Entra token (azd, az, GitHub OIDC); Flex
// does not offer publish-profile (basic credential) deployment.

param name string
param location string
param tags object = {}
param planId string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Blob container URL the platform deploys the package from.')
param deploymentContainerUrl string

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: planId
    httpsOnly: true
    // Only what Flex Consumption accepts: Learn's "Flex Consumption plan deprecations"
    // table (functions-app-settings) lists ftpsState (FTPS not supported),
    // use32BitWorkerProcess, isReserved, alwaysOn, linuxFxVersion,
    // functionAppScaleLimit, ... as invalid here, and newer regional stamps reject
    // ftpsState outright ("FtpsState ... for Flex Consumption sites is invalid",
    // Azure/terraform-azurerm-avm-res-web-site#360). FTP is off anyway: Flex has no
    // FTP endpoint. tests/infra-check (check_flex_site) keeps it that way.
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // The custom handler stack on Flex (stacks API: FC1 custom -> custom 1.0).
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
